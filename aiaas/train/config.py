"""A training job's configuration: keyword-only dataclasses checked when built.

Every check that can fail without running anything lives here, so a typo in a
SPEC costs the launcher a fraction of a second instead of a rendezvous and one
torch import per worker. The section dataclasses mirror the SPEC's TOML tables
one to one; `build_job_config` turns a parsed mapping into them and names the
exact key that is wrong, with the closest valid key when it is a misspelling.
This module imports neither torch nor anything of ours but `aiaas.errors`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from aiaas.errors import InvalidArgument

Strategy = Literal["ddp", "fsdp"]
Precision = Literal["fp32", "bf16"]
OptimizerName = Literal["sgd", "adam", "adamw"]
Schedule = Literal["constant", "linear", "cosine"]

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_NNODES = re.compile(r"^(\d+)(?::(\d+))?$")
_BUILTIN_LOSSES = ("cross_entropy", "mse")


class ConfigError(InvalidArgument):
    """A SPEC or flag value that cannot make a valid job; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.detail = message

    def under(self, section: str) -> ConfigError:
        """The same error with its key qualified by the enclosing section."""
        return ConfigError(f"{section}.{self.key}" if self.key else section, self.detail)


def is_reference(text: str) -> bool:
    """`package.module:attribute`, the form every factory in a SPEC takes."""
    return bool(_REFERENCE.match(text))


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be positive, got {value}")


def _not_negative(key: str, value: float) -> None:
    if value < 0:
        raise ConfigError(key, f"must not be negative, got {value}")


@dataclass(kw_only=True, frozen=True)
class ModelConfig:
    """Which module to train: a factory called with `kwargs` under the job's seed."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_reference(self.factory):
            raise ConfigError("factory", f"{self.factory!r} is not of the form module:factory")


@dataclass(kw_only=True, frozen=True)
class DataConfig:
    """Training (and optional evaluation) data: a Dataset factory or an .npz with x and y."""

    dataset: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    eval_dataset: str = ""
    eval_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("dataset", "eval_dataset"):
            value = getattr(self, key)
            if value and not (value.endswith(".npz") or is_reference(value)):
                raise ConfigError(key, f"{value!r} is neither module:factory nor an .npz path")


@dataclass(kw_only=True, frozen=True)
class TrainingConfig:
    """How long and on how much data per step; the numbers that decide the result."""

    global_batch_size: int
    steps: int = 0
    epochs: int = 0
    stop_at_step: int = 0
    grad_accumulation: int = 1
    loss: str = "cross_entropy"
    precision: Precision = "fp32"
    seed: int = 0
    max_grad_norm: float = 0.0
    log_every: int = 10

    def __post_init__(self) -> None:
        _positive("global_batch_size", self.global_batch_size)
        _positive("grad_accumulation", self.grad_accumulation)
        _positive("log_every", self.log_every)
        _not_negative("max_grad_norm", self.max_grad_norm)
        _not_negative("stop_at_step", self.stop_at_step)
        if (self.steps > 0) == (self.epochs > 0):
            raise ConfigError("steps", "set exactly one of training.steps and training.epochs")
        _not_negative("steps", self.steps)
        _not_negative("epochs", self.epochs)
        if self.steps and self.stop_at_step > self.steps:
            raise ConfigError("stop_at_step", f"{self.stop_at_step} is past steps={self.steps}")
        if self.loss not in _BUILTIN_LOSSES and not is_reference(self.loss):
            raise ConfigError(
                "loss", f"{self.loss!r} is not one of {', '.join(_BUILTIN_LOSSES)} or module:fn"
            )


@dataclass(kw_only=True, frozen=True)
class OptimizerConfig:
    """Optimizer and learning-rate schedule (warmup, then constant, linear or cosine decay)."""

    name: OptimizerName = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: Schedule = "constant"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError("lr", f"must be positive, got {self.lr}")
        _not_negative("weight_decay", self.weight_decay)
        _not_negative("momentum", self.momentum)
        _not_negative("warmup_steps", self.warmup_steps)
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError("betas", f"must be two numbers in [0, 1), got {self.betas}")


@dataclass(kw_only=True, frozen=True)
class ParallelConfig:
    """The process grid and how torchrun's elastic agent forms and restarts it."""

    strategy: Strategy = "ddp"
    nproc: int = 1
    nnodes: str = "1"
    node_rank: int = 0
    rdzv_backend: str = "c10d"
    rdzv_endpoint: str = ""
    rdzv_id: str = ""
    max_restarts: int = 0

    def __post_init__(self) -> None:
        _positive("nproc", self.nproc)
        _not_negative("node_rank", self.node_rank)
        _not_negative("max_restarts", self.max_restarts)
        match = _NNODES.match(self.nnodes)
        if not match or not 0 < self.min_nodes <= self.max_nodes:
            raise ConfigError("nnodes", f"{self.nnodes!r} is not N or MIN:MAX with 0 < MIN <= MAX")

    @property
    def min_nodes(self) -> int:
        match = _NNODES.match(self.nnodes)
        return int(match.group(1)) if match else 0

    @property
    def max_nodes(self) -> int:
        match = _NNODES.match(self.nnodes)
        return int(match.group(2) or match.group(1)) if match else 0


@dataclass(kw_only=True, frozen=True)
class CheckpointConfig:
    """When to write a checkpoint and how many to keep; one is always written at the end."""

    every_steps: int = 0
    keep_last: int = 2
    resume: bool = False

    def __post_init__(self) -> None:
        _not_negative("every_steps", self.every_steps)
        _positive("keep_last", self.keep_last)


@dataclass(kw_only=True, frozen=True)
class ExportConfig:
    """Where the final model goes: an ONNX model repository and, if configured, a registry."""

    enabled: bool = True
    name: str = ""
    repository: str = ""
    registry_uri: str = ""
    input_name: str = "input"


@dataclass(kw_only=True, frozen=True)
class JobConfig:
    """A whole training job; the run directory is derived from `name` unless given."""

    name: str
    run_dir: str = ""
    model: ModelConfig
    data: DataConfig
    training: TrainingConfig
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z0-9][\w.-]*$", self.name):
            raise ConfigError("name", f"{self.name!r} must be letters, digits, '.', '_' or '-'")
        accumulation = self.training.grad_accumulation
        for nodes in range(self.parallel.min_nodes, self.parallel.max_nodes + 1):
            workers = nodes * self.parallel.nproc
            if self.training.global_batch_size % (workers * accumulation):
                raise ConfigError(
                    "training.global_batch_size",
                    f"{self.training.global_batch_size} is not divisible by workers x "
                    f"grad_accumulation = {workers} x {accumulation}"
                    + (f" (with {nodes} nodes)" if nodes > 1 else ""),
                )

    @property
    def run_path(self) -> str:
        return self.run_dir or f"runs/{self.name}"

    def micro_batch_size(self, world_size: int) -> int:
        """Samples per worker per forward pass: global batch / (workers x accumulation)."""
        return self.training.global_batch_size // (world_size * self.training.grad_accumulation)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS: dict[str, type[Any]] = {
    "model": ModelConfig,
    "data": DataConfig,
    "training": TrainingConfig,
    "optimizer": OptimizerConfig,
    "parallel": ParallelConfig,
    "checkpoint": CheckpointConfig,
    "export": ExportConfig,
}


def build_job_config(raw: dict[str, Any]) -> JobConfig:
    """Turn a parsed SPEC (nested mapping) into a `JobConfig`, or raise one `ConfigError`."""
    job: JobConfig = _build(JobConfig, raw, prefix="")
    return job


def _build(cls: type[Any], raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip("."), f"must be a table, got {_kind(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(prefix + key, "unknown key" + _suggestion(key, fields, prefix))
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in raw:
            no_default = spec.default is dataclasses.MISSING
            if no_default and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(prefix + name, "missing required key")
            continue
        values[name] = _coerce(hints[name], raw[name], prefix + name)
    try:
        return cls(**values)
    except ConfigError as error:
        if prefix and "." not in error.key:
            raise error.under(prefix.rstrip(".")) from None
        raise


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(str, typing.get_args(hint)))
            raise ConfigError(key, f"{value!r} is not one of {choices}")
        return value
    if origin in (dict, list):
        if not isinstance(value, origin):
            wanted = "a table" if origin is dict else "an array"
            raise ConfigError(key, f"must be {wanted}, got {_kind(value)} {value!r}")
        if origin is list:
            return [_coerce(typing.get_args(hint)[0], item, key) for item in value]
        return dict(value)
    if hint is Any or origin in (typing.Union, types.UnionType):
        return value
    return _coerce_scalar(hint, value, key)


def _coerce_scalar(hint: type, value: Any, key: str) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(key, f"must be {_article(hint)}, got {_kind(value)} {value!r}")
    return value


def _article(hint: type) -> str:
    names: dict[type, str] = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
    }
    return names.get(hint, hint.__name__)


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a table", list: "an array"}
    return names.get(type(value), type(value).__name__)


def _suggestion(key: str, fields: dict[str, Any], prefix: str) -> str:
    if not prefix:  # a section key written at the top level, e.g. `steps = 10`
        for section, cls in _SECTIONS.items():
            if key in {f.name for f in dataclasses.fields(cls)}:
                return f" (did you mean '{section}.{key}'?)"
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""
