"""Ending a federation the everyday ways: the last round, and Ctrl-C.

Real processes: `aiaas federated server` and `client` (Flower's SuperLink and
SuperNodes) and `aiaas federated simulate`, each ended by the PID this test started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fed_support import DIGITS_SPEC, PYTHON, ROOT, write_spec
from ports import free_port

pytestmark = pytest.mark.slow

#: Generous for two cores shared with other tests, and far below Flower's own reconnect
#: patience (--max-wait 60 s with backoff), which is what clients used to wait out.
CLIENT_EXIT_S = 30


def _start(tmp_path: Path, name: str, *args: str, new_group: bool = False):
    """`aiaas federated ARGS`, output to NAME.log (stderr apart, in its own process group,
    with `new_group`: a terminal's Ctrl-C goes to the whole foreground group)."""
    with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [PYTHON, "-m", "aiaas.cli", "federated", *args],
            cwd=ROOT, stdout=log, stderr=subprocess.PIPE if new_group else subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
            start_new_session=new_group,
            preexec_fn=_as_from_a_terminal if new_group else None,
        )  # fmt: skip


def _as_from_a_terminal() -> None:
    """A shell starts a foreground command with SIGINT at its default and no signal blocked.
    The child would otherwise inherit this process's: a pytest started in the background
    by a non-interactive shell (`make test &`, as a CI script may) has SIGINT ignored from
    its start (POSIX: asynchronous commands ignore SIGINT without job control), and Ctrl-C
    would then be tested on a deaf process."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _kill(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _partition(spec: Path, tmp_path: Path, clients: int) -> list[Path]:
    out = tmp_path / "parts"
    done = subprocess.run(
        [PYTHON, "-m", "aiaas.cli", "federated", "partition", str(spec),
         "--clients", str(clients), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return sorted(out.glob("client-*.npz"))


def test_clients_leave_soon_after_the_servers_last_round(tmp_path):
    text = DIGITS_SPEC.replace("rounds = 3", "rounds = 1") + "fraction_evaluate = 0.0\n"
    spec = write_spec(tmp_path, text)
    files = _partition(spec, tmp_path, 2)
    address = f"127.0.0.1:{free_port()}"
    started = []
    try:
        server = _start(
            tmp_path, "server", "server", str(spec), "--address", address, "--insecure",
            "--clients", "2", "--run-dir", str(tmp_path / "run"), "--no-export",
        )  # fmt: skip
        started.append(server)
        # Flower's default patience: clients wait for a server that is not up yet.
        clients = [
            _start(tmp_path, f"client-{i}", "client", str(spec), "--server", address,
                   "--data", str(path), "--insecure")
            for i, path in enumerate(files)
        ]  # fmt: skip
        started += clients
        assert server.wait(timeout=300) == 0, (tmp_path / "server.log").read_text()
        for index, client in enumerate(clients):
            try:
                code = client.wait(timeout=CLIENT_EXIT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"client {index} still running {CLIENT_EXIT_S} s after the server")
            log = (tmp_path / f"client-{index}.log").read_text()
            assert code == 0, log
            assert "the server closed the federation" in log
            assert "Traceback" not in log
    finally:
        _kill(started)


def test_ctrl_c_during_simulate_says_where_it_stopped_in_one_line(tmp_path):
    text = DIGITS_SPEC.replace("rounds = 3", "rounds = 200")
    spec = write_spec(tmp_path, text)
    run_dir = tmp_path / "run"
    simulate = _start(
        tmp_path, "simulate", "simulate", str(spec), "--clients", "2",
        "--run-dir", str(run_dir), "--no-export", new_group=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "rounds.jsonl").is_file() or not (run_dir / "checkpoints").is_dir():
            assert simulate.poll() is None, (tmp_path / "simulate.log").read_text()
            assert time.monotonic() < deadline, "no round finished within 240 s"
            time.sleep(0.2)
        os.killpg(simulate.pid, signal.SIGINT)
        code = simulate.wait(timeout=120)
        assert simulate.stderr is not None
        err = simulate.stderr.read().decode()
    finally:
        _kill([simulate])
        if simulate.stderr is not None:
            simulate.stderr.close()
    assert code == 130, err
    assert "Traceback" not in err
    *progress, last = err.splitlines()
    assert all(line.startswith("round ") for line in progress), err  # the live progress
    match = re.fullmatch(
        r"error: interrupted after round (\d+) of 200; add --resume to continue from its "
        r"checkpoint \((.+)\)",
        last,
    )
    assert match, last
    assert Path(match[2]) == run_dir / "checkpoints" / f"round-{int(match[1]):04d}.pt"
    assert Path(match[2]).is_file()

    resumed = subprocess.run(
        [PYTHON, "-m", "aiaas.cli", "federated", "simulate", str(spec), "--clients", "2",
         "--run-dir", str(run_dir), "--no-export", "--resume",
         "--stop-after-round", str(int(match[1]) + 1)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from the checkpoint of round {match[1]}" in resumed.stdout + resumed.stderr
