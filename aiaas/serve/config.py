"""Model configuration: Triton's config.pbtxt, validated and completed from the model.

The configuration is kept as Triton's own protobuf message, so a config.pbtxt
parses with protobuf's text format (which names any unknown field and its line)
and the configuration endpoint returns Triton's JSON form of it unchanged.
``ServingConfig`` is the small validated view the batcher and runtimes read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from aiaas.errors import InvalidArgument
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.serve.types import TensorSpec

ModelConfig = pb.ModelConfig

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
DEFAULT_MODEL_FILENAME = "model.onnx"
#: Batch size given to a batchable model whose config does not set one.
DEFAULT_MAX_BATCH_SIZE = 32
#: Bound on a model's queue when the config sets none: overload answers 503, never grows.
DEFAULT_MAX_QUEUE_SIZE = 1024

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
_THREAD_PARAMETERS = ("intra_op_thread_count", "inter_op_thread_count")
#: When ONNX Runtime's pool threads may busy-wait for work (see ``RuntimeOptions.spinning``).
SPINNING_CHOICES = ("run", "always", "never")


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    max_queue_size: int
    default_timeout_us: int
    allow_timeout_override: bool
    delay_on_timeout: bool


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    priority_levels: int
    default_priority_level: int
    #: Queue policy per priority level (1-based); level 0 holds the default policy.
    queue_policies: dict[int, QueuePolicy]


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """What a runtime needs before the model can be read: known from the config alone."""

    instance_count: int
    intra_op_threads: int
    inter_op_threads: int
    graph_optimization_level: int
    #: "run" (the default) lets ONNX Runtime's pool threads spin between the operators of
    #: a run, for fast hand-offs, and stops them when the run returns: left spinning
    #: between runs (ONNX Runtime's own default, "always") they take the cores the front
    #: ends need. "never" never spins.
    spinning: str = "run"


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """What serving needs from a completed configuration, validated once."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: BatchingConfig
    runtime: RuntimeOptions
    model_filename: str
    label_filenames: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)


def parse_pbtxt(text: str) -> pb.ModelConfig:
    """Parse config.pbtxt; a syntax error or unknown field names itself and its line."""
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
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


def serving_config(config: pb.ModelConfig) -> ServingConfig:
    """Validate a completed configuration and reduce it to what serving reads."""
    batched = config.max_batch_size > 0
    batch_prefix = (-1,) if batched else ()
    inputs = tuple(
        TensorSpec(
            t.name, datatype_from_config(t.data_type, f"input '{t.name}'"), (*batch_prefix, *t.dims)
        )
        for t in config.input
    )
    outputs = tuple(
        TensorSpec(
            t.name,
            datatype_from_config(t.data_type, f"output '{t.name}'"),
            (*batch_prefix, *t.dims),
        )
        for t in config.output
    )
    return ServingConfig(
        name=config.name,
        max_batch_size=config.max_batch_size,
        inputs=inputs,
        outputs=outputs,
        batching=_batching_config(config),
        runtime=runtime_options(config),
        model_filename=config.default_model_filename or DEFAULT_MODEL_FILENAME,
        label_filenames={t.name: t.label_filename for t in config.output if t.label_filename},
        parameters={key: value.string_value for key, value in config.parameters.items()},
    )


def runtime_options(config: pb.ModelConfig) -> RuntimeOptions:
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    intra, inter = (_int_parameter(parameters, key) for key in _THREAD_PARAMETERS)
    return RuntimeOptions(
        instance_count=_instance_count(config),
        intra_op_threads=intra,
        inter_op_threads=inter,
        graph_optimization_level=config.optimization.graph.level,
        spinning=_choice_parameter(parameters, "spinning", SPINNING_CHOICES),
    )


def _choice_parameter(parameters: dict[str, str], key: str, choices: tuple[str, ...]) -> str:
    """The parameter's value from ``choices``; the first is the default."""
    raw = parameters.get(key, choices[0])
    if raw not in choices:
        raise InvalidArgument(f"parameters.{key}: '{raw}' is not one of {', '.join(choices)}")
    return raw


def _int_parameter(parameters: dict[str, str], key: str) -> int:
    raw = parameters.get(key, "0")
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"parameters.{key}: '{raw}' is not an integer") from None
    if value < 0:
        raise InvalidArgument(f"parameters.{key}: must be >= 0, got {value}")
    return value


def _instance_count(config: pb.ModelConfig) -> int:
    total = 0
    for index, group in enumerate(config.instance_group):
        if group.kind not in (pb.ModelInstanceGroup.KIND_AUTO, pb.ModelInstanceGroup.KIND_CPU):
            kind = pb.ModelInstanceGroup.Kind.Name(group.kind)
            raise InvalidArgument(f"instance_group[{index}].kind: {kind} is not available here")
        if group.count < 0:
            raise InvalidArgument(f"instance_group[{index}].count must be >= 0")
        total += group.count or 1
    return max(total, 1)


def _queue_policy(policy: pb.ModelQueuePolicy, where: str) -> QueuePolicy:
    return QueuePolicy(
        max_queue_size=policy.max_queue_size or DEFAULT_MAX_QUEUE_SIZE,
        default_timeout_us=policy.default_timeout_microseconds,
        allow_timeout_override=policy.allow_timeout_override,
        delay_on_timeout=policy.timeout_action == pb.ModelQueuePolicy.DELAY,
    )


def _batching_config(config: pb.ModelConfig) -> BatchingConfig:
    batching = config.dynamic_batching
    if config.HasField("dynamic_batching") and config.max_batch_size == 0:
        raise InvalidArgument("dynamic_batching: needs max_batch_size > 0")
    for size in batching.preferred_batch_size:
        if not 0 < size <= config.max_batch_size:
            raise InvalidArgument(
                f"dynamic_batching.preferred_batch_size: {size} is outside "
                f"1..max_batch_size ({config.max_batch_size})"
            )
    levels = batching.priority_levels
    if levels and not 0 < batching.default_priority_level <= levels:
        raise InvalidArgument(
            "dynamic_batching.default_priority_level: must be in 1..priority_levels "
            f"({levels}), got {batching.default_priority_level}"
        )
    default = _queue_policy(batching.default_queue_policy, "dynamic_batching.default_queue_policy")
    policies = {0: default}
    for level in range(1, levels + 1):
        policies[level] = default
    for level, policy in batching.priority_queue_policy.items():
        if not 0 < level <= levels:
            raise InvalidArgument(
                f"dynamic_batching.priority_queue_policy: level {level} is outside "
                f"1..priority_levels ({levels})"
            )
        policies[level] = _queue_policy(policy, f"dynamic_batching.priority_queue_policy[{level}]")
    return BatchingConfig(
        max_queue_delay_us=batching.max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(sorted(batching.preferred_batch_size)),
        priority_levels=levels,
        default_priority_level=batching.default_priority_level,
        queue_policies=policies,
    )
