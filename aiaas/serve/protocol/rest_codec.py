"""Open Inference Protocol V2 over HTTP: JSON bodies and the binary tensor extension,
to and from the internal request/response. Pure functions: bytes in, records out.

A binary request is a JSON header of ``Inference-Header-Content-Length`` bytes
followed by the raw tensors of the inputs that declare ``binary_data_size``, in
input order; a binary response is laid out the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from aiaas import tensors
from aiaas.errors import InvalidArgument
from aiaas.serve import shared_memory
from aiaas.serve.limits import RequestLimits
from aiaas.serve.types import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
#: Placeholder data of an input that lives in shared memory until the data plane reads it.
_NO_DATA = np.empty(0, dtype=np.uint8)


def loads_json(body: bytes | memoryview, what: str = "request body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidArgument(f"malformed JSON in the {what}: {error}") from None


def decode_infer_request(
    body: bytes, header_length: int | None = None, limits: RequestLimits | None = None
) -> InferRequest:
    """Decode a V2 infer request body (JSON, or JSON header + binary tensors); each
    tensor's declared size is checked against ``limits`` before its data is decoded."""
    limits = limits or RequestLimits()
    if header_length is not None and not 0 <= header_length <= len(body):
        raise InvalidArgument(
            f"Inference-Header-Content-Length {header_length} is outside the body "
            f"of {len(body)} bytes"
        )
    view = memoryview(body)
    header_end = len(body) if header_length is None else header_length
    header = loads_json(view[:header_end])
    if not isinstance(header, dict):
        raise InvalidArgument("the request body must be a JSON object")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("'inputs' must be a non-empty list of tensors")
    limits.check_count(len(raw_inputs), "inputs")
    offset = header_end
    inputs: list[InferInput] = []
    for index, raw in enumerate(raw_inputs):
        item, offset = _decode_input(raw, index, view, offset, limits)
        inputs.append(item)
    if offset != len(body):
        raise InvalidArgument(
            f"the body has {len(body) - offset} bytes of binary data that no input claims"
        )
    outputs = _decode_outputs(header.get("outputs"))
    limits.check_count(len(outputs or ()), "requested outputs")
    return InferRequest(
        inputs=inputs,
        outputs=outputs,
        id=_optional_str(header.get("id"), "id"),
        parameters=_parameters(header.get("parameters"), "parameters"),
    )


def _decode_input(
    raw: Any, index: int, body: memoryview, offset: int, limits: RequestLimits
) -> tuple[InferInput, int]:
    where = f"inputs[{index}]"
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where} must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{where}: 'name' must be a non-empty string")
    where = f"input '{name}'"
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidArgument(f"{where}: 'datatype' must be a string")
    tensors.numpy_dtype(datatype)
    shape = tensors.check_shape(raw.get("shape"), where)
    limits.check_shape(shape, where)
    parameters = _parameters(raw.get("parameters"), f"{where} parameters")
    binary_size = parameters.get("binary_data_size")
    if binary_size is not None:
        if isinstance(binary_size, bool) or not isinstance(binary_size, int) or binary_size < 0:
            raise InvalidArgument(f"{where}: 'binary_data_size' must be a non-negative integer")
        end = offset + binary_size
        if end > len(body):
            raise InvalidArgument(
                f"{where}: binary_data_size {binary_size} runs past the end of the body"
            )
        data = tensors.from_raw(body[offset:end], datatype, shape, where)
        return InferInput(name, datatype, shape, data, parameters), end
    if shared_memory.REGION in parameters:
        # The data plane reads it from the region; nothing of it is in the body.
        return InferInput(name, datatype, shape, _NO_DATA, parameters), offset
    if "data" not in raw:
        raise InvalidArgument(f"{where}: no 'data' and no 'binary_data_size'")
    data = tensors.from_json_data(raw["data"], datatype, shape, where)
    return InferInput(name, datatype, shape, data, parameters), offset


def _decode_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidArgument("'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgument(f"outputs[{index}] must be an object with a string 'name'")
        outputs.append(
            RequestedOutput(item["name"], _parameters(item.get("parameters"), f"outputs[{index}]"))
        )
    return outputs


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{where}: 'parameters' must be a JSON object")
    return raw


def _optional_str(raw: Any, where: str) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    raise InvalidArgument(f"'{where}' must be a string")


def wants_binary(request: InferRequest, output: str) -> bool:
    """Binary extension: per-output ``binary_data`` wins over request ``binary_data_output``."""
    for requested in request.outputs or ():
        if requested.name == output and "binary_data" in requested.parameters:
            return bool(requested.parameters["binary_data"])
    return bool(request.parameters.get("binary_data_output", False))


def encode_infer_response(
    response: InferResponse, request: InferRequest
) -> tuple[bytes, int | None]:
    """Encode a response; returns (body, JSON header length when binary parts follow)."""
    blobs: list[bytes] = []
    outputs = []
    for output in response.outputs:
        outputs.append(_encode_output(output, request, blobs))
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id is not None:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    header = orjson.dumps(body, option=JSON_OPTIONS)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _encode_output(
    output: InferOutput, request: InferRequest, blobs: list[bytes]
) -> dict[str, Any]:
    encoded: dict[str, Any] = {
        "name": output.name,
        "datatype": output.datatype,
        "shape": list(output.shape),
    }
    parameters = dict(output.parameters)
    if shared_memory.REGION in parameters:
        pass  # written into the client's shared-memory region by the data plane
    elif wants_binary(request, output.name):
        raw = tensors.to_raw(output.data)
        blobs.append(raw)
        parameters["binary_data_size"] = len(raw)
    else:
        encoded["data"] = _json_data(output.data)
    if parameters:
        encoded["parameters"] = parameters
    return encoded


def _json_data(array: np.ndarray) -> Any:
    """Flat row-major data; numeric arrays go to orjson as arrays (no Python list)."""
    if array.dtype.kind in "OSU":
        return tensors.to_json_data(array)
    return np.ascontiguousarray(array).reshape(-1)
