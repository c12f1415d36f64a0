"""Open Inference Protocol over gRPC: protobuf messages to and from the internal
request/response. Pure functions, no I/O, so that the servicer only moves messages.

Inputs may come typed (``contents``) or raw (``raw_input_contents``, which is what
tritonclient sends); outputs always go raw in ``raw_output_contents``, the one form
every Triton client reads. Raw tensors reuse the binary extension's codec in
``aiaas.tensors``, so REST and gRPC decode the same bytes to the same arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from google.protobuf import json_format

from aiaas import tensors
from aiaas.errors import InvalidArgument
from aiaas.serve import shared_memory
from aiaas.serve.limits import RequestLimits
from aiaas.serve.protocol.proto import grpc_service_pb2 as pb
from aiaas.serve.protocol.proto import model_config_pb2
from aiaas.serve.types import InferInput, InferRequest, InferResponse, RequestedOutput

#: Placeholder data of an input that lives in shared memory until the data plane reads it.
_NO_DATA = np.empty(0, dtype=np.uint8)

#: Datatype -> the typed ``InferTensorContents`` field that carries it (FP16 has none).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def optional_version(version: str) -> str | None:
    """proto3 cannot tell an absent string from an empty one: empty means 'server's choice'."""
    return version or None


# ---- infer -----------------------------------------------------------------------


def decode_infer_request(
    request: pb.ModelInferRequest, limits: RequestLimits | None = None
) -> InferRequest:
    """The internal request of a ModelInferRequest (model name and version are the caller's);
    counts and each tensor's declared size are checked against ``limits`` first.

    As Triton's clients send it, raw_input_contents holds one entry per input that is
    not in shared memory, in input order.
    """
    limits = limits or RequestLimits()
    given = request.inputs
    limits.check_count(len(given), "inputs")
    limits.check_count(len(request.outputs), "requested outputs")
    shapes = []
    for tensor in given:
        where = f"input '{tensor.name}'"
        shape = tensors.check_shape(list(tensor.shape), where)
        limits.check_shape(shape, where)
        shapes.append(shape)
    raw = request.raw_input_contents
    shared = [shared_memory.REGION in tensor.parameters for tensor in given]
    for tensor, in_region in zip(given, shared, strict=True):
        _check_one_data_source(tensor, in_region, bool(raw), request.model_name)
    if raw and len(raw) != shared.count(False):
        raise InvalidArgument(
            f"expected {shared.count(False)} raw_input_contents (one per input not in shared "
            f"memory) but got {len(raw)}"
        )
    next_raw = iter(raw)
    inputs = [
        _decode_input(tensor, shape, next(next_raw) if raw and not in_region else None)
        for tensor, shape, in_region in zip(given, shapes, shared, strict=True)
    ]
    if not inputs:
        raise InvalidArgument("the request must have at least one input")
    outputs = [
        RequestedOutput(output.name, decode_parameters(output.parameters))
        for output in request.outputs
    ]
    return InferRequest(
        inputs=inputs,
        outputs=outputs or None,
        id=request.id or None,
        parameters=decode_parameters(request.parameters),
    )


def _decode_input(
    tensor: pb.ModelInferRequest.InferInputTensor, shape: tuple[int, ...], raw: bytes | None
) -> InferInput:
    """One input whose ``shape`` has been checked already."""
    if not tensor.name:
        raise InvalidArgument("every input needs a non-empty 'name'")
    where = f"input '{tensor.name}'"
    datatype = tensor.datatype
    tensors.numpy_dtype(datatype)
    parameters = decode_parameters(tensor.parameters)
    if shared_memory.REGION in parameters:
        data = _NO_DATA  # the data plane reads it from the region
    elif raw is not None:
        data = tensors.from_raw(raw, datatype, shape, where)
    else:
        data = decode_contents(tensor.contents, datatype, shape, where)
    return InferInput(tensor.name, datatype, shape, data, parameters)


def _check_one_data_source(
    tensor: pb.ModelInferRequest.InferInputTensor, in_region: bool, uses_raw: bool, model: str
) -> None:
    """An input's data comes from one place; Triton checks this input by input, before
    counting raw contents, and clients match its words (grpc_explicit_int_content_client.py)."""
    if not tensor.HasField("contents") or not tensor.contents.ListFields():
        return
    if in_region:
        raise InvalidArgument(
            "unexpected 'content' provided when using shared memory for input tensor "
            f"'{tensor.name}' for model '{model}'"
        )
    if uses_raw:
        raise InvalidArgument(
            "contents field must not be specified when using raw_input_contents for "
            f"'{tensor.name}' for model '{model}'"
        )


def decode_contents(
    contents: pb.InferTensorContents, datatype: str, shape: tuple[int, ...], where: str
) -> np.ndarray:
    """A typed tensor: the one field its datatype travels in, checked against shape and range."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(
            f"{where}: datatype {datatype} has no typed contents field; send it in "
            "raw_input_contents"
        )
    present = [descriptor.name for descriptor, _ in contents.ListFields()]
    if any(name != field for name in present):
        raise InvalidArgument(
            f"{where}: datatype {datatype} travels in '{field}', got {', '.join(present)}"
        )
    values = getattr(contents, field)
    count = tensors.element_count(shape)
    if len(values) != count:
        raise InvalidArgument(
            f"{where}: '{field}' has {len(values)} elements but shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    dtype = tensors.numpy_dtype(datatype)
    if dtype.kind in "iu" and dtype.itemsize < 4 and count:
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidArgument(f"{where}: '{field}' has values outside the range of {datatype}")
        return wide.astype(dtype).reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def encode_infer_response(response: InferResponse) -> pb.ModelInferResponse:
    """Every output's data in raw_output_contents, in output order; an output the data
    plane wrote into a shared-memory region gets an empty entry, as in Triton, because
    clients find an output's contents by its position."""
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    if response.parameters:
        encode_parameters(response.parameters, message.parameters)
    raw = message.raw_output_contents
    for output in response.outputs:
        tensor = message.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        if output.parameters:
            encode_parameters(output.parameters, tensor.parameters)
            if shared_memory.REGION in output.parameters:
                raw.append(b"")
                continue
        raw.append(tensors.to_raw(output.data))
    return message


def decode_parameters(
    parameters: Mapping[str, pb.InferParameter | pb.ModelRepositoryParameter],
) -> dict[str, Any]:
    """A parameters map as plain values; an entry with no value set is left out."""
    if not parameters:
        return {}
    decoded: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            decoded[key] = getattr(parameter, choice)
    return decoded


def encode_parameters(values: Mapping[str, Any], target: Any) -> None:
    """Fill an InferParameter map; bool is tested before int, as bool is an int in Python."""
    for key, value in values.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, float):
            target[key].double_param = value
        else:
            target[key].string_param = str(value)


# ---- metadata, configuration, statistics, repository ------------------------------


def server_metadata(metadata: Mapping[str, Any]) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
    )


def model_metadata(metadata: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    """The model's ``parameters`` go in field 6, as the Open Inference Protocol's message
    has them; Triton's message stops at field 5, so its clients keep them unread."""
    message = pb.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[_tensor_metadata(spec) for spec in metadata["inputs"]],
        outputs=[_tensor_metadata(spec) for spec in metadata["outputs"]],
    )
    encode_parameters(metadata.get("parameters") or {}, message.parameters)
    return message


def _tensor_metadata(spec: Mapping[str, Any]) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec["name"], datatype=spec["datatype"], shape=spec["shape"]
    )


def model_config(config_json: Mapping[str, Any]) -> pb.ModelConfigResponse:
    """The data plane gives Triton's JSON form; parsing it back keeps one source of truth."""
    config = json_format.ParseDict(config_json, model_config_pb2.ModelConfig())
    return pb.ModelConfigResponse(config=config)


def model_statistics(statistics_json: Mapping[str, Any]) -> pb.ModelStatisticsResponse:
    """The statistics JSON uses Triton's field names, so it maps onto the message as is."""
    response = pb.ModelStatisticsResponse()
    json_format.ParseDict(statistics_json, response)
    return response


def shared_memory_status(
    regions: Iterable[Mapping[str, Any]],
) -> pb.SystemSharedMemoryStatusResponse:
    """The registered system shared-memory regions, keyed by name as Triton's message is."""
    response = pb.SystemSharedMemoryStatusResponse()
    for region in regions:
        response.regions[region["name"]].CopyFrom(
            pb.SystemSharedMemoryStatusResponse.RegionStatus(**region)
        )
    return response


def cuda_shared_memory_status(
    regions: Iterable[Mapping[str, Any]],
) -> pb.CudaSharedMemoryStatusResponse:
    """The registered CUDA shared-memory regions, keyed by name as Triton's message is."""
    response = pb.CudaSharedMemoryStatusResponse()
    for region in regions:
        response.regions[region["name"]].CopyFrom(
            pb.CudaSharedMemoryStatusResponse.RegionStatus(**region)
        )
    return response


def repository_index(rows: Iterable[Mapping[str, str]]) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=row["name"],
                version=row.get("version", ""),
                state=str(row.get("state", "")),
                reason=row.get("reason", ""),
            )
            for row in rows
        ]
    )
