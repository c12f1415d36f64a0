"""What `aiaas edge bundle` reports of a bundle: its size, and what running it costs a
small device — the bundle's own run.py in a child process on 1 thread (peak RSS is
the child's own high-water mark: loading plus one answer) — and how close its answers
are to the source version's, computed here with ONNX Runtime on the source model.

Fidelity: max abs difference and cosine similarity of the outputs for tensor and
embedding models; for a language model, greedy token agreement — the share of the
bundle's greedy tokens that the source model also picks when fed the same sequence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiaas.edge import runner
from aiaas.edge.bundle import Bundled
from aiaas.edge.source import MODEL_FILENAME, Source
from aiaas.errors import InvalidArgument

SAMPLE_TEXT = "The cat slept on the warm windowsill."
SAMPLE_PROMPT = "The capital of France is"
REPORT_TOKENS = 32


@dataclass
class Measurement:
    size_bytes: int
    peak_rss_bytes: int
    #: In the runner: checking every file and loading the session.
    load_s: float
    #: In the runner: the first inference (a whole greedy generation for a language model).
    first_answer_s: float
    #: The runner process from start to exit (interpreter and imports included).
    process_s: float
    tokens_per_s: float | None
    fidelity: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bundle_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def measure(bundled: Bundled, work: Path, sample: Path | None = None) -> Measurement:
    task = bundled.manifest["task"]
    if task == "text-generation":
        args = ["--prompt", SAMPLE_PROMPT, "--raw", "--max-tokens", str(REPORT_TOKENS)]
    elif task == "embedding":
        args = ["--text", SAMPLE_TEXT]
    else:
        sample = sample or write_sample(bundled.manifest, work / "sample.npz")
        args = ["--input", str(sample)]
    result, peak_rss, process_s = run_bundle(bundled.path, args)
    if task == "text-generation":
        fidelity = token_agreement(bundled.reference, result)
    else:
        fidelity = tensor_fidelity(bundled, result, args)
    return Measurement(
        size_bytes=bundle_size(bundled.path),
        peak_rss_bytes=peak_rss,
        load_s=result["load_s"],
        first_answer_s=result["infer_s"],
        process_s=process_s,
        tokens_per_s=result.get("decode_tokens_per_s"),
        fidelity=fidelity,
    )


def write_sample(manifest: dict[str, Any], path: Path) -> Path:
    """One deterministic input per signature entry (a free dimension becomes 1)."""
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {}
    for spec in manifest["signature"]["inputs"]:
        shape = tuple(1 if dim < 0 else dim for dim in spec["shape"])
        dtype = np.dtype(runner.NUMPY_TYPES.get(spec["datatype"], "float32"))
        if dtype.kind == "f":
            arrays[spec["name"]] = rng.uniform(0.0, 1.0, shape).astype(dtype)
        else:
            arrays[spec["name"]] = np.zeros(shape, dtype=dtype)
    np.savez(path, **arrays)
    return path


def run_bundle(path: Path, args: list[str]) -> tuple[dict[str, Any], int, float]:
    """The bundle's run.py on 1 thread: its JSON answer, peak RSS (bytes) and wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(path / "run.py"), "--threads", "1", "--json", *args]
    out_path, err_path = path.parent / f".{path.name}.out", path.parent / f".{path.name}.err"
    try:
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.perf_counter()
            process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
            _, status, usage = os.wait4(process.pid, 0)
            elapsed = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            lines = err_path.read_text(errors="replace").strip().splitlines() or ["no message"]
            raise InvalidArgument(f"the bundle's run.py failed: {lines[-1]}")
        result: dict[str, Any] = json.loads(out_path.read_text())
    finally:
        out_path.unlink(missing_ok=True)
        err_path.unlink(missing_ok=True)
    # The runner's own VmHWM where the system has one: ru_maxrss counts the forked parent.
    peak = result.pop("peak_rss_bytes", None) or usage.ru_maxrss * 1024
    return result, int(peak), elapsed


def _session(source: Source) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(source.folder / MODEL_FILENAME), options, providers=["CPUExecutionProvider"]
    )


def tensor_fidelity(bundled: Bundled, result: dict[str, Any], args: list[str]) -> dict[str, float]:
    reference = bundled.reference
    session = _session(reference)
    if bundled.manifest["task"] == "embedding":
        expected = runner.embed(session, reference.folder, [SAMPLE_TEXT])
    else:
        feed = runner.read_inputs(Path(args[1]), bundled.manifest)
        expected = runner.run_tensors(session, feed)
    got = {name: np.asarray(value, dtype=np.float64) for name, value in result["outputs"].items()}
    want = {name: np.asarray(value, dtype=np.float64) for name, value in expected.items()}
    a = np.concatenate([got[name].ravel() for name in sorted(want)])
    b = np.concatenate([want[name].ravel() for name in sorted(want)])
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return {
        "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
        "cosine": min(1.0, float(a @ b / norm)) if norm else 1.0,
    }


def token_agreement(reference: Source, result: dict[str, Any]) -> dict[str, float]:
    """Teacher-forced: at each of the bundle's tokens, does the source model agree?"""
    from tokenizers import Tokenizer

    generation = json.loads((reference.folder / "generation.json").read_text())
    tokenizer = Tokenizer.from_file(str(reference.folder / "tokenizer.json"))
    prompt_ids = runner.encode_prompt(tokenizer, SAMPLE_PROMPT, generation)
    tokens = [int(token) for token in result["token_ids"]]
    if not tokens:
        return {"greedy_agreement": 1.0, "tokens": 0.0}
    generator = runner.Generator(_session(reference), generation)
    logits, past = generator.step(prompt_ids, 0, generator.empty_past())
    agreed = 0
    for index, token in enumerate(tokens):
        agreed += int(np.argmax(logits)) == token
        if index + 1 < len(tokens):
            logits, past = generator.step([token], len(prompt_ids) + index, past)
    return {"greedy_agreement": agreed / len(tokens), "tokens": float(len(tokens))}
