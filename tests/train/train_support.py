"""Training runs shared by the tests: each distinct run is launched once per session.

Every run goes through the real CLI in a subprocess (`python -m aiaas.cli train`),
so the launcher, torch's elastic agent, gloo and DCP are all the real ones.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

# Tiny on purpose: 12 SGD steps of a 64-32-10 MLP on digits take well under a second.
DIGITS_SPEC = """\
[model]
factory = "aiaas.train.examples:digits_mlp"
kwargs = { hidden = 32 }

[data]
dataset = "aiaas.train.examples:digits_dataset"
eval_dataset = "aiaas.train.examples:digits_dataset"
eval_kwargs = { split = "test" }

[training]
steps = 12
global_batch_size = 32
log_every = 1
seed = 7

[optimizer]
name = "sgd"
lr = 0.5
momentum = 0.9
schedule = "cosine"
warmup_steps = 2

[checkpoint]
every_steps = 6

[export]
enabled = false
"""


def run_train(*args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 180):
    """`aiaas train ARGS` in a subprocess; returns the CompletedProcess (stdout+stderr merged)."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environment.pop("AIAAS_REGISTRY_URI", None)  # registration only where a test asks for it
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "aiaas.cli", "train", *args]
    return run_in_own_group(command, cwd=cwd, env=environment, timeout=timeout)


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it, by PID.

    torch's elastic agent starts each worker in a session of its own, so killing
    the launcher's process group would leave the workers running.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    pending, tree = [pid], []
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += children.get(current, [])
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def run_in_own_group(
    command: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run in a new session; a launcher still running at `timeout` is killed with its workers."""
    process = subprocess.Popen(
        command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(command)} still running after {timeout} s:\n{output}")
    return subprocess.CompletedProcess(command, process.returncode, output)


class TrainRuns:
    """Runs by name, launched on first use and reused by every later test that asks."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.spec = workdir / "digits.toml"
        self.spec.write_text(DIGITS_SPEC)
        self._done: dict[str, Path] = {}

    def get(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Path:
        if name not in self._done:
            self._done[name] = self.launch(self.workdir / "runs" / name, *args, env=env)
        return self._done[name]

    def launch(self, run_dir: Path, *args: str, env: Mapping[str, str] | None = None) -> Path:
        """Run (or resume) in `run_dir` now, uncached; the run must succeed."""
        result = run_train(
            str(self.spec), "--run-dir", str(run_dir), *args, cwd=self.workdir, env=env
        )
        assert result.returncode == 0, result.stdout
        with open(run_dir / "cli-output.txt", "a") as log:
            log.write(result.stdout)
        return run_dir

    @property
    def registry_uri(self) -> str:
        (self.workdir / "registry").mkdir(exist_ok=True)
        return f"sqlite:///{self.workdir / 'registry' / 'registry.db'}"

    def baseline(self) -> Path:
        """One worker, no interruption: what every other run must reproduce.

        It alone also exports and registers its model (the other runs skip the
        few seconds that ONNX export and its parity check take).
        """
        return self.get("baseline", "--nproc", "1", "--export", "--registry-uri", self.registry_uri)


def final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "final" / "model.pt", weights_only=True)


def max_difference(left: Path, right: Path) -> float:
    a, b = final_params(left), final_params(right)
    assert a.keys() == b.keys()
    return max(float((a[key] - b[key]).abs().max()) for key in a)
