"""Ctrl-C and a finished run resumed: one plain line each, and nothing done twice."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_support import DIGITS_SPEC, ROOT, TrainRuns, kill_tree, run_train

from aiaas.registry import Registry

#: Far more steps than any test waits for: the run is always interrupted mid-training.
ENDLESS_SPEC = DIGITS_SPEC.replace("steps = 12", "steps = 1000000").replace(
    "every_steps = 6", "every_steps = 5"
)


def interrupt_once_checkpointed(run_dir: Path, spec: Path, *args: str) -> tuple[int, str, str]:
    """`aiaas train` in its own process group, sent SIGINT (as a terminal's Ctrl-C is) once
    it has written a checkpoint; returns exit code, stdout and stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AIAAS_REGISTRY_URI", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "aiaas.cli", "train", str(spec), "--run-dir", str(run_dir)]
    process = subprocess.Popen(
        [*command, *args], cwd=spec.parent, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not (run_dir / "checkpoints" / "latest").is_file():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    except BaseException:
        kill_tree(process.pid)
        process.communicate()
        raise
    return process.returncode, out, err


@pytest.mark.parametrize("nproc", ["1", "2"])
def test_ctrl_c_says_where_training_stopped_in_one_line_and_resume_continues(tmp_path, nproc):
    spec = tmp_path / "endless.toml"
    spec.write_text(ENDLESS_SPEC)
    run_dir = tmp_path / "runs" / "endless"
    code, out, err = interrupt_once_checkpointed(run_dir, spec, "--nproc", nproc)
    assert code == 130, (out, err)
    assert "Traceback" not in out + err
    assert len(err.splitlines()) == 1, err
    match = re.fullmatch(
        r"error: interrupted at step (\d+) of 1000000; add --resume to continue from the "
        r"checkpoint of step (\d+) \((.+)\)\n",
        err,
    )
    assert match, err
    stopped, checkpoint_step, checkpoint = int(match[1]), int(match[2]), Path(match[3])
    assert checkpoint_step % 5 == 0
    assert 0 < checkpoint_step <= stopped
    assert checkpoint == run_dir / "checkpoints" / f"step-{checkpoint_step:08d}"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == checkpoint.name

    resume_to = str(checkpoint_step + 2)
    resumed = run_train(
        str(spec), "--run-dir", str(run_dir), "--nproc", nproc, "--resume",
        "--stop-at-step", resume_to, cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout
    assert f"resumed from the checkpoint of step {checkpoint_step}" in resumed.stdout
    assert f"stopped at step {resume_to}; continue with --resume" in resumed.stdout


def test_resuming_a_finished_run_registers_no_second_version(train_runs: TrainRuns):
    finished = train_runs.baseline()
    copy = finished.with_name("finished-resumed")
    shutil.copytree(finished, copy)
    with Registry.open(train_runs.registry_uri) as registry:
        before = [version.uri for version in registry.versions("digits")]
    result = run_train(
        str(train_runs.spec), "--run-dir", str(copy), "--nproc", "1", "--resume",
        "--export", "--registry-uri", train_runs.registry_uri, cwd=train_runs.workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "the run already finished at step 12; nothing to do" in result.stdout
    with Registry.open(train_runs.registry_uri) as registry:
        assert [version.uri for version in registry.versions("digits")] == before
    assert json.loads((copy / "final" / "publish.json").read_text())["registered"] in before


def test_a_registry_in_a_missing_folder_is_refused_before_training(tmp_path):
    spec = tmp_path / "digits.toml"
    spec.write_text(DIGITS_SPEC)
    missing = tmp_path / "nowhere" / "registry.db"
    result = run_train(
        str(spec), "--run-dir", str(tmp_path / "run"), "--export",
        "--registry-uri", f"sqlite:///{missing}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == (f"error: --registry-uri: folder {missing.parent} does not exist\n")
    assert not (tmp_path / "run").exists()
    assert not missing.parent.exists()
