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
#: `cryptography` and what it imports, for checking a signature on the device.
SIGNATURE_PACKAGES = ("cryptography", "cffi", "_cffi_backend", "pycparser")
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
