"""Model configuration: Triton's config.pbtxt, validated and completed from the model.

The configuration is kept as Triton's own protobuf message, so a config.pbtxt
parses with protobuf's text format (which names any unknown field and its line)
and the configuration endpoint returns Triton's JSON form of it unchanged.
``serving_config`` turns a completed one into the small view serving reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from aiaas.errors import InvalidArgument
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.tensors import TensorSpec

ModelConfig = pb.ModelConfig

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
DEFAULT_MODEL_FILENAME = "model.onnx"
#: Batch size given to a batchable model whose config does not set one.
DEFAULT_MAX_BATCH_SIZE = 32

_DATATYPE_NAMES = {
    "BOOL": pb.TYPE_BOOL,
    "UINT8": pb.TYPE_UINT8,
    "UINT16": pb.TYPE_UINT16,
    "UINT32": pb.TYPE_UINT32,
    "UINT64": pb.TYPE_UINT64,
    "INT8": pb.TYPE_INT8,
    "INT16": pb.TYPE_INT16,
    "INT32": pb.TYPE_INT32,
    "INT64": pb.TYPE_INT64,
    "FP16": pb.TYPE_FP16,
    "FP32": pb.TYPE_FP32,
    "FP64": pb.TYPE_FP64,
    "BYTES": pb.TYPE_STRING,
}
_CONFIG_TO_DATATYPE = {v: k for k, v in _DATATYPE_NAMES.items()}


def parse_pbtxt(text: str) -> pb.ModelConfig:
    """Parse config.pbtxt; a syntax error or unknown field names itself and its line."""
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise InvalidArgument(f"config.pbtxt: {error}") from None
    except ValueError as error:  # a number the field cannot hold: protobuf says ValueError
        raise InvalidArgument(f"config.pbtxt: {error}") from None
    return config


def parse_json(text: str) -> pb.ModelConfig:
    """Parse Triton's JSON form of a configuration (the load-with-override parameter)."""
    config = pb.ModelConfig()
    try:
        json_format.Parse(text, config)
    except json_format.ParseError as error:
        raise InvalidArgument(f"config override: {error}") from None
    return config


def string_parameters(config: pb.ModelConfig) -> dict[str, str]:
    """The config's `parameters` as plain strings, the only kind Triton's configs use."""
    return {key: value.string_value for key, value in config.parameters.items()}


def to_json_dict(config: pb.ModelConfig) -> dict[str, Any]:
    """Triton's JSON form: proto field names, enums as names, and 64-bit integers as
    numbers (protobuf's JSON mapping would quote them; Triton's clients expect numbers)."""
    result: dict[str, Any] = json_format.MessageToDict(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _unquote_int64(config.DESCRIPTOR, result)
    return result


_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
}


def _unquote_int64(descriptor: Descriptor, value: dict[str, Any]) -> None:
    for proto_field in descriptor.fields:
        if proto_field.name not in value:
            continue
        item = value[proto_field.name]
        if proto_field.message_type is not None and proto_field.message_type.GetOptions().map_entry:
            entry = proto_field.message_type.fields_by_name["value"]
            if entry.message_type is not None:
                for sub in item.values():
                    _unquote_int64(entry.message_type, sub)
        elif proto_field.message_type is not None:
            for sub in item if isinstance(item, list) else [item]:
                _unquote_int64(proto_field.message_type, sub)
        elif proto_field.type in _INT64_TYPES:
            is_list = isinstance(item, list)
            value[proto_field.name] = [int(v) for v in item] if is_list else int(item)


def datatype_to_config(datatype: str) -> int:
    return _DATATYPE_NAMES[datatype]


def datatype_from_config(data_type: int, where: str) -> str:
    try:
        return _CONFIG_TO_DATATYPE[data_type]
    except KeyError:
        name = pb.DataType.Name(data_type) if data_type in pb.DataType.values() else data_type
        raise InvalidArgument(f"{where}: data_type {name} is not supported") from None


def complete(
    config: pb.ModelConfig,
    model_name: str,
    model_inputs: Sequence[TensorSpec],
    model_outputs: Sequence[TensorSpec],
) -> pb.ModelConfig:
    """Fill in what the config leaves out from the model, and reject what contradicts it.

    ``model_inputs``/``model_outputs`` carry full shapes (batch dimension included)
    as the runtime reads them from the model file.
    """
    done = pb.ModelConfig()
    done.CopyFrom(config)
    _check_identity(done, model_name)
    batchable = all(spec.shape[:1] == (-1,) for spec in (*model_inputs, *model_outputs))
    if not done.HasField("max_batch_size"):
        done.max_batch_size = DEFAULT_MAX_BATCH_SIZE if batchable else 0
    if done.max_batch_size < 0:
        raise InvalidArgument("max_batch_size must be >= 0")
    if done.max_batch_size > 0 and not batchable:
        fixed = next(s.name for s in (*model_inputs, *model_outputs) if s.shape[:1] != (-1,))
        raise InvalidArgument(
            f"max_batch_size is {done.max_batch_size} but the model's tensor '{fixed}' has no "
            "variable first (batch) dimension; set max_batch_size: 0"
        )
    _complete_tensors(done.input, model_inputs, "input", done.max_batch_size > 0)
    _complete_tensors(done.output, model_outputs, "output", done.max_batch_size > 0)
    if not done.HasField("version_policy"):
        done.version_policy.latest.num_versions = 1
    if not done.instance_group:
        group = done.instance_group.add()
        group.count = 1
        group.kind = pb.ModelInstanceGroup.KIND_CPU
    if done.max_batch_size > 0 and not done.HasField("dynamic_batching"):
        done.dynamic_batching.SetInParent()
    if not done.default_model_filename:
        done.default_model_filename = DEFAULT_MODEL_FILENAME
    return done


def _check_identity(config: pb.ModelConfig, model_name: str) -> None:
    if config.name and config.name != model_name:
        raise InvalidArgument(
            f"name: config names the model '{config.name}' but its folder is '{model_name}'"
        )
    config.name = model_name
    if config.platform and config.platform != PLATFORM:
        raise InvalidArgument(f"platform: '{config.platform}' is not served; use '{PLATFORM}'")
    if config.backend and config.backend != BACKEND:
        raise InvalidArgument(f"backend: '{config.backend}' is not served; use '{BACKEND}'")
    config.platform = PLATFORM
    config.backend = BACKEND


def _complete_tensors(
    configured: Sequence[pb.ModelInput] | Sequence[pb.ModelOutput],
    model_specs: Sequence[TensorSpec],
    kind: str,
    batched: bool,
) -> None:
    by_name = {spec.name: spec for spec in model_specs}
    seen: set[str] = set()
    for index, tensor in enumerate(configured):
        where = f"{kind}[{index}]"
        if tensor.name not in by_name:
            raise InvalidArgument(
                f"{where}.name: the model has no {kind} '{tensor.name}' "
                f"(it has {', '.join(sorted(by_name))})"
            )
        if tensor.name in seen:
            raise InvalidArgument(f"{where}.name: {kind} '{tensor.name}' is listed twice")
        seen.add(tensor.name)
        _check_unsupported(tensor, where)
        _complete_one(tensor, by_name[tensor.name], where, batched)
    for spec in model_specs:
        if spec.name not in seen:
            tensor = configured.add()  # type: ignore[union-attr]
            tensor.name = spec.name
            _complete_one(tensor, spec, f"{kind} '{spec.name}'", batched)


def _check_unsupported(tensor: pb.ModelInput | pb.ModelOutput, where: str) -> None:
    if tensor.HasField("reshape"):
        raise InvalidArgument(f"{where}.reshape is not supported")
    if tensor.is_shape_tensor:
        raise InvalidArgument(f"{where}.is_shape_tensor is not supported")
    if isinstance(tensor, pb.ModelInput) and tensor.allow_ragged_batch:
        raise InvalidArgument(f"{where}.allow_ragged_batch is not supported")


def _complete_one(
    tensor: pb.ModelInput | pb.ModelOutput, spec: TensorSpec, where: str, batched: bool
) -> None:
    model_dims = spec.shape[1:] if batched else spec.shape
    if tensor.data_type == pb.TYPE_INVALID:
        tensor.data_type = datatype_to_config(spec.datatype)
    elif datatype_from_config(tensor.data_type, where) != spec.datatype:
        raise InvalidArgument(
            f"{where}.data_type: config says {pb.DataType.Name(tensor.data_type)} but the model's "
            f"'{spec.name}' is {pb.DataType.Name(datatype_to_config(spec.datatype))}"
        )
    if not tensor.dims:
        tensor.dims.extend(model_dims)
        return
    dims = tuple(tensor.dims)
    compatible = len(dims) == len(model_dims) and all(
        a == b or a == -1 or b == -1 for a, b in zip(dims, model_dims, strict=True)
    )
    if not compatible:
        batch_note = (
            " (dims exclude the batch dimension when max_batch_size > 0)" if batched else ""
        )
        raise InvalidArgument(
            f"{where}.dims: config says {list(dims)} but the model's '{spec.name}' has "
            f"{list(model_dims)}{batch_note}"
        )
