"""Trained digits models, their .npz files and the MiniLM export, shared by
tests/export and tests/compress (each conftest registers them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DIGITS_MLP = "aiaas.compress.examples:digits_mlp"
DIGITS_CNN = "aiaas.compress.examples:digits_cnn"


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train/eval/test .npz plus state dicts of a trained MLP and CNN."""
    from aiaas.compress import examples

    directory = tmp_path_factory.mktemp("digits")
    paths = examples.write_digits_npz(directory)
    arrays = examples.digits_arrays()
    for name, factory, epochs in (
        ("mlp", examples.digits_mlp, 20),
        ("cnn", examples.digits_cnn, 8),
    ):
        model = examples.train_classifier(factory(), arrays["train_x"], arrays["train_y"], epochs)
        paths[name] = directory / f"{name}.pt"
        torch.save(model.state_dict(), paths[name])
    return paths


@pytest.fixture(scope="session")
def digits_mlp(digits_files: dict[str, Path]) -> torch.nn.Module:
    from aiaas.compress import examples

    model = examples.digits_mlp()
    model.load_state_dict(torch.load(digits_files["mlp"]))
    return model.eval()


@pytest.fixture(scope="session")
def minilm_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM exported once per session (both test folders ask for it: cached on disk)."""
    from aiaas.export.minilm import export_minilm

    repository = tmp_path_factory.getbasetemp() / "minilm-repository"
    if not (repository / "minilm" / "1" / "model.onnx").is_file():
        export_minilm(repository)
    return repository


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m aiaas.cli ...` as a user runs it, with its exit code and streams."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aiaas.cli", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=240,
    )  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
