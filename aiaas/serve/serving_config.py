"""What serving reads from a model's configuration: a small validated view of a
completed config (``config.complete``), for the batcher, the runtimes and the repository.

Kept apart from ``config``, which owns Triton's message itself (parsing, completion,
the JSON form): this module turns its fields into plain records and checks the values
only serving gives a meaning to (queue policies, priorities, thread options).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiaas.errors import InvalidArgument
from aiaas.serve.config import DEFAULT_MODEL_FILENAME, datatype_from_config, string_parameters
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.tensors import TensorSpec

#: Bound on a model's queue when the config sets none: overload answers 503, never grows.
DEFAULT_MAX_QUEUE_SIZE = 1024
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
        parameters=string_parameters(config),
    )


def runtime_options(config: pb.ModelConfig) -> RuntimeOptions:
    parameters = string_parameters(config)
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


def _queue_policy(policy: pb.ModelQueuePolicy) -> QueuePolicy:
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
    default = _queue_policy(batching.default_queue_policy)
    policies = {0: default}
    for level in range(1, levels + 1):
        policies[level] = default
    for level, policy in batching.priority_queue_policy.items():
        if not 0 < level <= levels:
            raise InvalidArgument(
                f"dynamic_batching.priority_queue_policy: level {level} is outside "
                f"1..priority_levels ({levels})"
            )
        policies[level] = _queue_policy(policy)
    return BatchingConfig(
        max_queue_delay_us=batching.max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(sorted(batching.preferred_batch_size)),
        priority_levels=levels,
        default_priority_level=batching.default_priority_level,
        queue_policies=policies,
    )
