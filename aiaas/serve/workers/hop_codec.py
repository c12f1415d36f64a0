"""The hop's wire format: an internal request or response as one msgpack header and one
frame per tensor, and the calls of one turn bundled as one message (errors travel as
``aiaas.errors.encode_error`` records).

Pure functions over plain buffers (no sockets), so the front-end and engine sides, and
their tests, share one definition of the format. Tensors never go through msgpack or
pickle: a fixed-size tensor is its little-endian bytes in a frame of its own (sent
without a copy, read back with ``np.frombuffer`` over the received frame), a BYTES
tensor is the binary extension's length-prefixed form. A tensor that lives in a
client's shared-memory region carries no frame: the engine reads and writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from aiaas import tensors
from aiaas.errors import InvalidArgument
from aiaas.serve import shared_memory
from aiaas.serve.types import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput

#: A frame as either side holds it: bytes, or a flat memoryview of bytes (of an array
#: being sent, or of a received frame).
Buffer = bytes | memoryview

#: The frame index of a tensor that travels in shared memory, not in the message.
NO_FRAME = -1
#: What stands in for a tensor kept in shared memory (the codecs use the same).
_NO_DATA = np.empty(0, dtype=np.uint8)


def pack(value: Any) -> bytes:
    """msgpack with bytes kept as bytes; a value it cannot carry is the request's fault."""
    try:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidArgument(f"the request cannot be passed to the engine: {error}") from None


def unpack(frame: Buffer) -> Any:
    return msgpack.unpackb(frame, raw=False)


# ---- bundles ----------------------------------------------------------------------


def bundle(parts: Sequence[tuple[bytes, Sequence[Buffer]]]) -> list[Buffer]:
    """The calls (or replies) of one event-loop turn as one message: their packed headers
    one after another in the first frame, then each one's frames in order. Every header
    is a map whose "frames" says how many frames are its own."""
    frames: list[Buffer] = [b"".join(header for header, _ in parts)]
    for _, own in parts:
        frames += own
    return frames


def unbundle(frames: Sequence[Buffer]) -> list[tuple[dict[str, Any], list[Buffer]]]:
    """Each header of a bundle with its own frames; ValueError (or msgpack's error) for a
    message that is not one."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(frames[0])
    parts, index = [], 1
    for header in unpacker:
        count = header.get("frames") if isinstance(header, dict) else None
        if not isinstance(count, int) or count < 0 or index + count > len(frames):
            raise ValueError("a header on the hop that does not say its frames")
        parts.append((header, list(frames[index : index + count])))
        index += count
    return parts


# ---- requests ----------------------------------------------------------------------


def encode_request(
    name: str, version: str | None, request: InferRequest
) -> tuple[dict[str, Any], list[Buffer]]:
    """The msgpack-able arguments of an infer call and its tensor frames, in input order."""
    frames: list[Buffer] = []
    inputs = [
        [item.name, item.datatype, list(item.shape), item.parameters, _add_frame(item, frames)]
        for item in request.inputs
    ]
    outputs = None if request.outputs is None else [[o.name, o.parameters] for o in request.outputs]
    args = {
        "name": name,
        "version": version,
        "id": request.id,
        "parameters": request.parameters,
        "inputs": inputs,
        "outputs": outputs,
    }
    return args, frames


def decode_request(
    args: dict[str, Any], frames: Sequence[Buffer]
) -> tuple[str, str | None, InferRequest]:
    inputs = [
        InferInput(name, datatype, tuple(shape), _tensor(datatype, shape, index, frames), params)
        for name, datatype, shape, params, index in args["inputs"]
    ]
    outputs = args["outputs"]
    request = InferRequest(
        inputs=inputs,
        outputs=None if outputs is None else [RequestedOutput(n, p) for n, p in outputs],
        id=args["id"],
        parameters=args["parameters"],
    )
    return args["name"], args["version"], request


# ---- responses ---------------------------------------------------------------------


def encode_response(response: InferResponse) -> tuple[dict[str, Any], list[Buffer]]:
    frames: list[Buffer] = []
    outputs = [
        [item.name, item.datatype, list(item.shape), item.parameters, _add_frame(item, frames)]
        for item in response.outputs
    ]
    body = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "parameters": response.parameters,
        "provenance": response.provenance,
        "outputs": outputs,
    }
    return body, frames


def decode_response(body: dict[str, Any], frames: Sequence[Buffer]) -> InferResponse:
    outputs = [
        InferOutput(name, datatype, tuple(shape), _tensor(datatype, shape, index, frames), params)
        for name, datatype, shape, params, index in body["outputs"]
    ]
    return InferResponse(
        model_name=body["model_name"],
        model_version=body["model_version"],
        outputs=outputs,
        id=body["id"],
        parameters=body["parameters"],
        provenance=body["provenance"],
    )


# ---- tensors -----------------------------------------------------------------------


def _add_frame(item: InferInput | InferOutput, frames: list[Buffer]) -> int:
    """Append the tensor's frame; its index, or NO_FRAME when shared memory holds it."""
    if shared_memory.is_shared(item.parameters):
        return NO_FRAME
    frames.append(tensor_frame(item.datatype, item.data))
    return len(frames) - 1


def tensor_frame(datatype: str, array: np.ndarray) -> Buffer:
    """A tensor's frame: a flat byte view of the array itself when it is already
    little-endian and contiguous (the socket's write reads its memory: no copy of ours),
    else of a converted copy."""
    if datatype == "BYTES":
        return tensors.to_raw(array)
    wire = tensors.numpy_dtype(datatype).newbyteorder("<")
    return np.ascontiguousarray(array, dtype=wire).reshape(-1).view(np.uint8).data


def _tensor(datatype: str, shape: Sequence[int], index: int, frames: Sequence[Buffer]) -> Any:
    """The array over a received frame (no copy); its size is checked against the shape."""
    if index == NO_FRAME:
        return _NO_DATA
    return tensors.from_raw(frames[index], datatype, shape, "a tensor passed between processes")
