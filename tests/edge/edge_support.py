"""Helpers for the edge tests: a device-like Python, a digits classifier folder, and
the `aiaas` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from examples.make_model_repository import mlp_model

ROOT = Path(__file__).resolve().parents[2]
#: What a device installs: onnxruntime, numpy, and tokenizers for text models.
DEVICE_PACKAGES = ("numpy", "numpy.libs", "onnxruntime", "tokenizers")
#: The optional packages: `cryptography` (signatures) and `jinja2` (chat templates), with
#: what they import.
OPTIONAL_PACKAGES = ("cryptography", "cffi", "_cffi_backend", "pycparser", "jinja2", "markupsafe")
LABELS = [f"digit_{i}" for i in range(10)]


@dataclass(frozen=True)
class DevicePython:
    python: Path

    def run(self, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
        env["OMP_NUM_THREADS"] = "1"
        return subprocess.run(
            [str(self.python), *map(str, args)],
            capture_output=True, text=True, env=env, cwd=cwd or Path("/"), timeout=120,
        )  # fmt: skip


def _site_packages() -> Path:
    return Path(np.__file__).resolve().parents[1]


def make_device_python(folder: Path, packages: Sequence[str]) -> DevicePython:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--clear", str(folder)], check=True
    )
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = folder / "lib" / version / "site-packages"
    source = _site_packages()
    for name in packages:
        for item in source.glob(f"{name}*"):
            link = target / item.name
            if not link.exists() and (item.name == name or item.name.startswith(f"{name}.")):
                link.symlink_to(item)
    return DevicePython(folder / "bin" / "python")


def write_digits_repo(repo: Path, seed: int = 0) -> Path:
    """A digits-shaped classifier (64 inputs, 10 probabilities) with its labels file."""
    folder = repo / "digits"
    (folder / "1").mkdir(parents=True)
    onnx.save(mlp_model(seed=seed), folder / "1" / "model.onnx")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (folder / "config.pbtxt").write_text(
        'name: "digits"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        'output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] '
        'label_filename: "labels.txt" } ]\n'
    )
    return folder


def aiaas(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `aiaas` command in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "aiaas.cli", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


def write_embedding_repo(repo: Path, width: int = 8) -> Path:
    """A word-level embedder (mean of word vectors over the mask) and its tokenizer.json,
    with the config's `task: feature-extraction`, as `aiaas export` writes MiniLM."""
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]", "the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    folder = repo / "words"
    (folder / "1").mkdir(parents=True)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "1" / "tokenizer.json"))
    table = np.random.default_rng(0).normal(size=(len(words), width)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last"], ["mask3"]),
        helper.make_node("Mul", ["vectors", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "one"], ["count"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "words",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
         for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(table, "table"),
         numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "one")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        'parameters { key: "task" value { string_value: "feature-extraction" } }\n'
    )
    return folder
