"""Trained digits models, their .npz files and the MiniLM export, shared by
tests/export and tests/compress (each conftest registers them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from built_once import build_once, run_folder

ROOT = Path(__file__).resolve().parents[1]
DIGITS_MLP = "aiaas.compress.examples:digits_mlp"
DIGITS_CNN = "aiaas.compress.examples:digits_cnn"


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train/eval/test .npz plus state dicts of a trained MLP and CNN, trained once per
    run: tests/export, tests/compress and every xdist worker read the same files."""
    directory = build_once(run_folder(tmp_path_factory) / "digits", _train_digits)
    splits = {split: directory / f"{split}.npz" for split in ("train", "eval", "test")}
    return splits | {name: directory / f"{name}.pt" for name in TRAINED_EPOCHS}


#: The trained digits models and their epochs.
TRAINED_EPOCHS = {"mlp": 20, "cnn": 8}


def _train_digits(directory: Path) -> None:
    from aiaas.compress import examples

    examples.write_digits_npz(directory)
    arrays = examples.digits_arrays()
    factories = {"mlp": examples.digits_mlp, "cnn": examples.digits_cnn}
    for name, epochs in TRAINED_EPOCHS.items():
        model = examples.train_classifier(
            factories[name](), arrays["train_x"], arrays["train_y"], epochs
        )
        torch.save(model.state_dict(), directory / f"{name}.pt")


@pytest.fixture(scope="session")
def digits_mlp(digits_files: dict[str, Path]) -> torch.nn.Module:
    from aiaas.compress import examples

    model = examples.digits_mlp()
    model.load_state_dict(torch.load(digits_files["mlp"]))
    return model.eval()


@pytest.fixture(scope="session")
def minilm_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM exported once per run (tests/export, tests/compress and tests/serve ask)."""
    from aiaas.export.minilm import export_minilm

    return build_once(run_folder(tmp_path_factory) / "minilm-repository", export_minilm)


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
