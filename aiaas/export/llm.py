"""GGUF file -> a text-generation model of the repository (`aiaas export llm`).

`REPO/NAME/VERSION/` gets model.onnx (the decoder with its KV cache), tokenizer.json and
generation.json; `REPO/NAME/config.pbtxt` says it is a text-generation model. Everything
is written into a staging folder beside the version and renamed into place once parity
passed, so a failed or interrupted conversion leaves no half-written version behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from aiaas import lineage
from aiaas.errors import InvalidArgument
from aiaas.export import repository as layout
from aiaas.export.gguf_reader import LlamaGGUF, read_llama_gguf

#: Served context when the model's own is longer: a KV cache of 8192 positions per
#: sequence would cost the engine more memory than this small service needs.
MAX_SERVED_CONTEXT = 2048
TOKENIZER_FILENAME = "tokenizer.json"
GENERATION_FILENAME = "generation.json"
#: Prompts of the parity check, as token ids of SmolLM2-like vocabularies do not matter:
#: any ids below the vocabulary size exercise the same graph.
_PARITY_PROMPTS = [[1, 504, 3458, 282, 4649, 314, 216, 28, 33], [1, 28, 33, 40]]
#: The modules whose code decides what a conversion writes.
_CONVERTER_MODULES = ("gguf_reader", "llama_torch", "llm_onnx", "llm_tokenizer", "llm", "convert")


@dataclass(frozen=True, slots=True)
class LLMExportReport:
    path: Path
    max_abs_error: float
    parity_steps: int
    seconds: float
    recipe: dict[str, Any]


def parse_target(out: Path) -> tuple[Path, str, int]:
    """REPO/NAME/VERSION -> (repository, name, version)."""
    out = Path(out)
    if not out.name.isdigit() or int(out.name) < 1:
        raise InvalidArgument(f"--out {out}: the last part must be a version number >= 1")
    name = layout.check_name(out.parent.name)
    return out.parent.parent, name, int(out.name)


def export_llm(gguf_file: Path, out: Path, *, context_length: int | None = None) -> LLMExportReport:
    """Convert ``gguf_file`` into the version folder ``out`` (REPO/NAME/VERSION)."""
    from aiaas.export import llm_onnx
    from aiaas.export.llama_torch import build_decoder
    from aiaas.export.llm_tokenizer import build_tokenizer

    started = time.monotonic()
    repository, name, version = parse_target(out)
    target = repository / name / str(version)
    if target.exists():
        raise InvalidArgument(f"{target} already exists; choose another version")
    source = read_llama_gguf(Path(gguf_file))
    served = _served_context(source, context_length)
    recipe = conversion_recipe(source, served)
    model = build_decoder(source.hyperparameters, source.weights)
    created = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.staging-", dir=target.parent))
    try:
        model_file = staging / layout.MODEL_FILENAME
        llm_onnx.export_decoder(model, model_file)
        parity = llm_onnx.check_decoder_parity(model, model_file, _PARITY_PROMPTS)
        write_lineage(model_file, source, recipe, variant="fp32")
        build_tokenizer(source.tokenizer).save(str(staging / TOKENIZER_FILENAME))
        generation = generation_config(source, served, recipe)
        (staging / GENERATION_FILENAME).write_text(json.dumps(generation, indent=2) + "\n")
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not target.exists():
            shutil.rmtree(target.parent, ignore_errors=True)
    write_config(repository / name)
    return LLMExportReport(
        path=target,
        max_abs_error=parity.max_abs_error,
        parity_steps=parity.steps,
        seconds=time.monotonic() - started,
        recipe=recipe,
    )


def _served_context(source: LlamaGGUF, requested: int | None) -> int:
    native = source.hyperparameters.context_length
    if requested is None:
        return min(native, MAX_SERVED_CONTEXT)
    if not 1 <= requested <= native:
        raise InvalidArgument(f"--context-length {requested}: the model allows 1 to {native}")
    return requested


def converter_digest() -> str:
    """A digest of the converter's own code, recorded in every conversion's recipe: a
    folder converted by other code is told apart, and converted again, without
    comparing half a gigabyte of weights."""
    digest = hashlib.sha256()
    for module in _CONVERTER_MODULES:
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


def converted_by_this_converter(version: Path, gguf_sha256: str | None = None) -> bool:
    """Whether ``version`` holds a complete conversion made by this code (and, when given,
    from the GGUF file with that sha256)."""
    try:
        recipe = json.loads((version / GENERATION_FILENAME).read_text())["source"]["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    same_source = gguf_sha256 is None or recipe.get("gguf_sha256") == gguf_sha256
    return same_source and recipe.get("converter_digest") == converter_digest()


def conversion_recipe(source: LlamaGGUF, context_length: int) -> dict[str, Any]:
    types = sorted(set(source.tensor_types.values()))
    return {
        "convert": "gguf-to-onnx",
        "converter_digest": converter_digest(),
        "gguf_file": source.path.name,
        "gguf_sha256": source.sha256,
        "gguf_tensor_types": types,
        "dtype": "float32",
        "opset": _opset(),
        "context_length": context_length,
    }


def _opset() -> int:
    from aiaas.export.convert import OPSET

    return OPSET


def write_lineage(
    model_file: Path, source: LlamaGGUF, recipe: dict[str, Any], variant: str
) -> None:
    """Source hash, recipe, variant and the lineage record (`aiaas.lineage`: the GGUF file
    by absolute path and sha256 is the parent) into metadata_props, so a copy of the file
    still says where it came from."""
    model = onnx.load(str(model_file))
    gguf = {"path": str(Path(source.path).absolute()), "sha256": source.sha256}
    record = lineage.make_record("convert", recipe=recipe, parents=[gguf])
    props = {
        "aiaas.source.gguf_file": source.path.name,
        "aiaas.source.sha256": source.sha256,
        "aiaas.recipe": json.dumps(recipe, sort_keys=True),
        "aiaas.variant": variant,
        "aiaas.task": "text-generation",
        lineage.LINEAGE_KEY: lineage.encode(record),
    }
    onnx.helper.set_model_props(model, props)
    onnx.save_model(model, str(model_file))


def generation_config(
    source: LlamaGGUF, context_length: int, recipe: dict[str, Any]
) -> dict[str, Any]:
    hyper, tokenizer = source.hyperparameters, source.tokenizer

    def text(token_id: int | None) -> str | None:
        return None if token_id is None else tokenizer.tokens[token_id]

    return {
        "model_type": "llama",
        "context_length": context_length,
        "num_layers": hyper.num_layers,
        "num_key_value_heads": hyper.num_key_value_heads,
        "head_dim": hyper.head_dim,
        "vocab_size": hyper.vocab_size,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_ids": [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id],
        "pad_token_id": tokenizer.padding_token_id,
        "add_bos_token": tokenizer.add_bos_token,
        "chat_template": tokenizer.chat_template,
        "special_tokens": {
            "bos": text(tokenizer.bos_token_id),
            "eos": text(tokenizer.eos_token_id),
            "unk": text(tokenizer.unknown_token_id),
            "pad": text(tokenizer.padding_token_id),
        },
        "defaults": {"temperature": 1.0, "top_p": 1.0, "max_tokens": None},
        "source": {"gguf_file": source.path.name, "sha256": source.sha256, "recipe": recipe},
    }


def config_text(name: str) -> str:
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 0\n"
        'parameters { key: "task" value { string_value: "text-generation" } }\n'
    )


def write_config(model_dir: Path) -> None:
    staged = model_dir / ".config.pbtxt.tmp"
    staged.write_text(config_text(model_dir.name))
    staged.replace(model_dir / "config.pbtxt")
