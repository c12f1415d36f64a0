"""Bad input fails in the launcher, before any worker starts: one line, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from train_support import DIGITS_SPEC, ROOT, run_train


def spec_with(tmp_path: Path, old: str, new: str) -> Path:
    assert old in DIGITS_SPEC
    path = tmp_path / "spec.toml"
    path.write_text(DIGITS_SPEC.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "flags", "message"),
    [
        (
            "global_batch_size",
            "global_batchsize",
            [],
            "error: training.global_batchsize: unknown key "
            "(did you mean 'training.global_batch_size'?)",
        ),
        (
            'factory = "aiaas.train.examples:digits_mlp"\n',
            "",
            [],
            "error: model.factory: missing required key",
        ),
        (
            "digits_mlp",
            "digits_mpl",
            [],
            "error: model.factory: 'aiaas.train.examples' has no attribute 'digits_mpl' "
            "(did you mean 'aiaas.train.examples:digits_mlp'?)",
        ),
        (
            "aiaas.train.examples:digits_mlp",
            "no_such_module:mlp",
            [],
            "error: model.factory: cannot import module 'no_such_module': "
            "No module named 'no_such_module'",
        ),
        (
            "global_batch_size = 32",
            "global_batch_size = 30",
            ["--nproc", "4"],
            "error: training.global_batch_size: 30 is not divisible by workers x "
            "grad_accumulation = 4 x 1",
        ),
        (
            "seed = 7",
            "seed = 7",
            ["--nproc", "2", "--grad-accumulation", "3"],
            "error: training.global_batch_size: 32 is not divisible by workers x "
            "grad_accumulation = 2 x 3",
        ),
        (
            "seed = 7",
            "seed = 7",
            ["--set", "parallel.strategy=zero3"],
            "error: parallel.strategy: 'zero3' is not one of ddp, fsdp",
        ),
        (
            "seed = 7",
            "seed = 7",
            ["--set", "optimizer.lrate=0.1"],
            "error: optimizer.lrate: unknown key (did you mean 'optimizer.lr'?)",
        ),
        (
            "steps = 12",
            'steps = "many"',
            [],
            "error: training.steps: must be an integer, got str 'many'",
        ),
        (
            "[model]",
            "[model",
            [],
            "is not valid TOML: Expected ']' at the end of a table declaration",
        ),
    ],
)
def test_bad_spec_fails_with_one_line_and_exit_code_2(
    tmp_path: Path, old: str, new: str, flags: list[str], message: str
):
    result = run_train(str(spec_with(tmp_path, old, new)), *flags, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout
    assert message in result.stdout
    assert not (tmp_path / "runs").exists()  # no worker, no run directory


def test_missing_spec_file_and_resume_without_checkpoint_fail_before_launch(tmp_path: Path):
    missing = run_train(str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert (missing.returncode, missing.stdout.strip()) == (
        2,
        f"error: SPEC {tmp_path / 'nope.toml'} does not exist",
    )
    spec = spec_with(tmp_path, "seed = 7", "seed = 7")
    resume = run_train(str(spec), "--resume", "--run-dir", "runs/x", cwd=tmp_path)
    assert resume.returncode == 2
    assert (
        resume.stdout.strip() == "error: --resume: runs/x has no complete checkpoint to resume from"
    )


def test_importing_the_cli_does_not_import_torch():
    """`aiaas serve` shares the CLI module; registering `train` must not make it load torch."""
    code = "import sys, aiaas.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
