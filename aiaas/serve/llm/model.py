"""What a language model's version folder holds, read once at load time (blocking):
the ONNX session, the tokenizer, the generation settings, and the engine's bounds
from config.pbtxt's parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiaas.errors import InvalidArgument
from aiaas.serve.llm.tokenizer import ChatTokenizer
from aiaas.serve.runtimes.onnx import OnnxModel

TASK = "text-generation"
_REQUIRED = ("context_length", "num_layers", "num_key_value_heads", "head_dim", "vocab_size")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Bounds of one engine, from the model's config parameters."""

    #: Sequences decoded together in one step.
    max_num_seqs: int = 32
    #: Requests that may wait for a slot; one more is refused with 429.
    max_num_waiting: int = 256
    #: Prompt tokens prefilled in one step before the batch decodes again.
    max_prefill_tokens: int = 2048
    #: Prompt tokens per prefill run (a run's logits are [tokens, vocab] floats).
    prefill_chunk_tokens: int = 512
    #: Seconds an unload or a swap lets running generations finish before ending them.
    drain_timeout_s: float = 60.0

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> EngineSettings:
        values: dict[str, Any] = {}
        for key, default in _defaults().items():
            raw = parameters.get(key)
            if raw is None:
                continue
            try:
                value = type(default)(raw)
            except ValueError:
                raise InvalidArgument(f"parameters.{key}: '{raw}' is not a number") from None
            if value <= 0:
                raise InvalidArgument(f"parameters.{key}: must be > 0, got {raw}")
            values[key] = value
        return cls(**values)


def _defaults() -> dict[str, Any]:
    base = EngineSettings()
    return {name: getattr(base, name) for name in EngineSettings.__slots__}


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    """generation.json: the model's shape and its special tokens."""

    context_length: int
    num_layers: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    raw: Mapping[str, Any]


@dataclass(eq=False)
class LLMModel:
    """A language model's files, loaded: what an engine is built from."""

    runtime: OnnxModel
    tokenizer: ChatTokenizer
    generation: GenerationConfig
    settings: EngineSettings


def is_language_model(parameters: Mapping[str, str], version_dir: Path) -> bool:
    """The config says so; without a `task` (a model served from the registry comes
    without its config.pbtxt) the folder does, holding what `aiaas export llm` writes."""
    task = parameters.get("task")
    if task is not None:
        return task == TASK
    return (version_dir / "generation.json").is_file()


def read_generation_config(path: Path) -> GenerationConfig:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"{path.name}: cannot be read as JSON: {error}") from None
    missing = [key for key in _REQUIRED if not isinstance(raw.get(key), int)]
    if missing:
        raise InvalidArgument(f"{path.name}: missing integer field(s) {', '.join(missing)}")
    return GenerationConfig(
        context_length=raw["context_length"],
        num_layers=raw["num_layers"],
        num_key_value_heads=raw["num_key_value_heads"],
        head_dim=raw["head_dim"],
        vocab_size=raw["vocab_size"],
        eos_token_ids=tuple(int(t) for t in raw.get("eos_token_ids") or ()),
        raw=raw,
    )


def load_language_model(
    version_dir: Path, runtime: OnnxModel, parameters: Mapping[str, str]
) -> LLMModel:
    """Everything beside the ONNX file, checked against the session's inputs."""
    for filename in ("tokenizer.json", "generation.json"):
        if not (version_dir / filename).is_file():
            raise InvalidArgument(f"a text-generation model needs {filename} beside the model")
    generation = read_generation_config(version_dir / "generation.json")
    names = {spec.name for spec in runtime.inputs}
    expected = {"input_ids", "attention_mask", "position_ids"} | {
        f"past_key_values.{i}.{kind}"
        for i in range(generation.num_layers)
        for kind in ("key", "value")
    }
    if not expected <= names:
        missing = sorted(expected - names)[:3]
        raise InvalidArgument(f"model.onnx lacks the KV-cache inputs {', '.join(missing)}")
    tokenizer = ChatTokenizer.from_files(version_dir / "tokenizer.json", generation.raw)
    return LLMModel(runtime, tokenizer, generation, EngineSettings.from_parameters(parameters))
