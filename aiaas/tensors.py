"""The tensor vocabulary shared by REST, gRPC, the runtimes and the registry.

Pure functions, constant tables and the ``TensorSpec`` record only (no I/O, nothing
internal imported but the error types), so that both wire formats decode to exactly
the same numpy arrays, every package names datatypes from the same tables, and a
codec bug shows up in one place. BYTES tensors are numpy object arrays of ``bytes``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aiaas.errors import InvalidArgument

#: Open Inference Protocol datatype -> numpy dtype (BYTES is object).
DATATYPE_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

NUMPY_TO_DATATYPE: dict[np.dtype[Any], str] = {v: k for k, v in DATATYPE_TO_NUMPY.items()}

#: ONNX element type (``TensorProto.DataType`` name) -> Open Inference Protocol datatype.
#: BF16 has a V2 name but no numpy dtype, so a registry can describe it and a runtime
#: cannot serve it.
ONNX_TO_DATATYPE: dict[str, str] = {
    "BOOL": "BOOL",
    "UINT8": "UINT8",
    "UINT16": "UINT16",
    "UINT32": "UINT32",
    "UINT64": "UINT64",
    "INT8": "INT8",
    "INT16": "INT16",
    "INT32": "INT32",
    "INT64": "INT64",
    "FLOAT16": "FP16",
    "FLOAT": "FP32",
    "DOUBLE": "FP64",
    "STRING": "BYTES",
    "BFLOAT16": "BF16",
}

#: numpy dtype kinds a JSON array may decode to for each datatype family.
_JSON_KINDS: dict[str, str] = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}

_LENGTH_PREFIX = struct.Struct("<I")


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a protocol datatype; an unknown name is the client's mistake."""
    try:
        return DATATYPE_TO_NUMPY[datatype]
    except KeyError:
        raise InvalidArgument(
            f"unsupported datatype '{datatype}'; expected one of {', '.join(DATATYPE_TO_NUMPY)}"
        ) from None


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of an array (unicode and bytes arrays are BYTES), in either
    byte order, since the raw forms are little-endian whatever the machine."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    try:
        return NUMPY_TO_DATATYPE[array.dtype.newbyteorder("=")]
    except KeyError:
        raise InvalidArgument(f"numpy dtype {array.dtype} has no protocol datatype") from None


def onnx_datatype(element_type: str) -> str | None:
    """The protocol datatype of an ONNX element type named as ``TensorProto`` names it
    (``FLOAT``) or as ONNX Runtime lowercases it (``float``); None when V2 has none."""
    return ONNX_TO_DATATYPE.get(element_type.upper())


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output as the protocol shows it: ``-1`` marks a variable dimension.

    One record for the registry's signatures and the server's metadata, so that both
    describe a model in the same words."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in data["shape"]))


#: numpy's (and ONNX Runtime's) most dimensions a tensor may have.
MAX_DIMS = 64
#: A shape whose non-zero dimensions multiply past this describes no array numpy can make,
#: even with a zero dimension elsewhere (numpy checks the product of the others).
MAX_NOMINAL_ELEMENTS = 2**56


def check_shape(shape: object, where: str) -> tuple[int, ...]:
    """Validate a client-supplied shape: at most 64 non-negative integers that describe
    an array numpy can hold."""
    if not isinstance(shape, list | tuple):
        raise InvalidArgument(f"{where}: 'shape' must be a list of integers")
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise InvalidArgument(f"{where}: 'shape' must hold non-negative integers, got {dim!r}")
    if len(shape) > MAX_DIMS:
        raise InvalidArgument(f"{where}: 'shape' has {len(shape)} dimensions; at most {MAX_DIMS}")
    if math.prod(max(dim, 1) for dim in shape) > MAX_NOMINAL_ELEMENTS:
        raise InvalidArgument(f"{where}: shape {list(shape)} is too large for any tensor")
    return tuple(shape)


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def byte_size(datatype: str, shape: Sequence[int]) -> int:
    """Bytes a fixed-size tensor takes in its raw form (BYTES has no fixed size: -1)."""
    if datatype == "BYTES":
        return -1
    return element_count(shape) * numpy_dtype(datatype).itemsize


def _as_bytes_item(item: Any, where: str) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise InvalidArgument(f"{where}: BYTES elements must be strings, got {type(item).__name__}")


def from_json_data(data: Any, datatype: str, shape: Sequence[int], where: str) -> np.ndarray:
    """Decode the ``data`` of a JSON tensor (flat or nested, row-major) into an array."""
    if not isinstance(data, list):
        data = [data]
    dtype = numpy_dtype(datatype)
    count = element_count(shape)
    if datatype == "BYTES":
        flat = _flatten(data, where)
        if len(flat) != count:
            raise _count_mismatch(where, len(flat), shape)
        out = np.empty(count, dtype=object)
        out[:] = [_as_bytes_item(item, where) for item in flat]
        return out.reshape(shape)
    try:
        parsed = np.asarray(data)
    except ValueError:
        raise InvalidArgument(f"{where}: 'data' is ragged; nested lists must be regular") from None
    if parsed.size != count:
        raise _count_mismatch(where, parsed.size, shape)
    if dtype.kind in "iu" and parsed.dtype.kind in "fO":
        # numpy widens integers beyond int64 to float or object: decode them exactly.
        return _exact_integers(_flatten(data, where), dtype, datatype, where).reshape(shape)
    if parsed.size and parsed.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise InvalidArgument(
            f"{where}: 'data' holds {_kind_name(parsed.dtype.kind)} values, "
            f"which do not fit datatype {datatype}"
        )
    if dtype.kind in "iu" and parsed.size and parsed.dtype != dtype:
        info = np.iinfo(dtype)
        if parsed.min() < info.min or parsed.max() > info.max:
            raise InvalidArgument(f"{where}: 'data' has values outside the range of {datatype}")
    if dtype.kind == "f":
        return _floats(parsed, dtype, datatype, where).reshape(shape)
    return parsed.astype(dtype, copy=False).reshape(shape)


def _floats(parsed: np.ndarray, dtype: np.dtype[Any], datatype: str, where: str) -> np.ndarray:
    """JSON numbers as FP16/FP32: one too large for the type is refused, not made inf."""
    with np.errstate(over="ignore"):
        out = parsed.astype(dtype, copy=False)
    if out.size and not np.isfinite(out).all():
        raise InvalidArgument(f"{where}: 'data' has values outside the range of {datatype}")
    return out


def _exact_integers(flat: list[Any], dtype: np.dtype[Any], datatype: str, where: str) -> np.ndarray:
    if not all(isinstance(item, int) and not isinstance(item, bool) for item in flat):
        raise InvalidArgument(f"{where}: 'data' holds non-integer values for datatype {datatype}")
    try:
        return np.array(flat, dtype=dtype)
    except OverflowError:
        raise InvalidArgument(
            f"{where}: 'data' has values outside the range of {datatype}"
        ) from None


def _kind_name(kind: str) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point"}.get(
        kind, "non-numeric"
    )


def _count_mismatch(where: str, got: int, shape: Sequence[int]) -> InvalidArgument:
    return InvalidArgument(
        f"{where}: 'data' has {got} elements but shape {list(shape)} needs {element_count(shape)}"
    )


def _flatten(data: list[Any], where: str) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def to_json_data(array: np.ndarray) -> list[Any]:
    """Flatten an array to the row-major list the JSON form carries."""
    if array.dtype.kind in "OSU":
        return [_bytes_to_text(item) for item in array.reshape(-1)]
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    result: list[Any] = array.reshape(-1).tolist()
    return result


def _bytes_to_text(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    return str(item)


def from_raw(
    buffer: bytes | memoryview, datatype: str, shape: Sequence[int], where: str
) -> np.ndarray:
    """Decode a tensor in its raw binary form (binary extension, gRPC raw contents, shm)."""
    if datatype == "BYTES":
        items = split_length_prefixed(buffer, where)
        if len(items) != element_count(shape):
            raise InvalidArgument(
                f"{where}: raw BYTES holds {len(items)} elements but shape {list(shape)} "
                f"needs {element_count(shape)}"
            )
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(shape)
    dtype = numpy_dtype(datatype)
    expected = element_count(shape) * dtype.itemsize
    if len(buffer) != expected:
        raise InvalidArgument(
            f"{where}: raw data has {len(buffer)} bytes but {datatype} shape {list(shape)} "
            f"needs {expected}"
        )
    return np.frombuffer(buffer, dtype=dtype.newbyteorder("<")).reshape(shape)


def to_raw(array: np.ndarray) -> bytes:
    """The raw binary form of an array: little-endian row-major, or length-prefixed BYTES."""
    if array.dtype.kind in "OSU":
        return join_length_prefixed(array.reshape(-1))
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def split_length_prefixed(buffer: bytes | memoryview, where: str) -> list[bytes]:
    """Split the BYTES wire form: each element a 4-byte little-endian length, then its bytes."""
    view = memoryview(buffer)
    items: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise InvalidArgument(f"{where}: raw BYTES data ends inside a length prefix")
        (length,) = _LENGTH_PREFIX.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidArgument(f"{where}: raw BYTES element runs past the end of the data")
        items.append(bytes(view[offset : offset + length]))
        offset += length
    return items


def join_length_prefixed(items: Any) -> bytes:
    parts: list[bytes] = []
    for item in items:
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LENGTH_PREFIX.pack(len(data)))
        parts.append(data)
    return b"".join(parts)
