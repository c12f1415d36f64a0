"""Real Flower processes on 127.0.0.1: a SuperLink server and SuperNode clients.

Each client is its own `aiaas federated client` process with its own partition
file. Processes are ended by the PID this test started them with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fed_support import DIGITS_SPEC, PYTHON, ROOT, final_state, max_difference, write_spec
from ports import free_port

from aiaas.federated.client_app import FAIL_ENV, HANG_ENV, HANG_MARKER_DIR_ENV
from aiaas.federated.config import load_federated_job
from aiaas.federated.partition import parse_scheme
from aiaas.federated.session import simulate_job

pytestmark = pytest.mark.slow


class Processes:
    """`aiaas federated ...` subprocesses with their logs; killed by PID at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: list = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None):
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self.logs.append(log)
        process = subprocess.Popen(
            [PYTHON, "-m", "aiaas.cli", "federated", *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        )
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()


@pytest.fixture
def processes(tmp_path):
    started = Processes(tmp_path)
    yield started
    started.stop_all()


def partition_files(spec: Path, tmp_path: Path, clients: int) -> list[Path]:
    out = tmp_path / "parts"
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "aiaas.cli",
            "federated",
            "partition",
            str(spec),
            "--clients",
            str(clients),
            "--partition",
            "iid",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return sorted(out.glob("client-*.npz"))


def start_clients(processes, spec, address, files, env=None, tag=""):
    return [
        processes.start(
            f"client{tag}-{index}",
            "client",
            str(spec),
            "--server",
            address,
            "--data",
            str(path),
            "--insecure",
            "--max-wait",
            "3",
            env=env if index == len(files) - 1 else None,
        )
        for index, path in enumerate(files)
    ]


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "the server exited early"
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.2)


def test_a_deployed_federation_resumes_survives_a_killed_client_registers_and_serves(
    tmp_path, processes, start_server, monkeypatch
):
    # Client-side evaluation is covered in simulation; here it would only double the
    # number of ClientApp processes Flower starts per round.
    text = DIGITS_SPEC.replace("rounds = 3", "rounds = 2") + "fraction_evaluate = 0.0\n"
    spec = write_spec(tmp_path, text)
    files = partition_files(spec, tmp_path, 3)
    address, run_dir = f"127.0.0.1:{free_port()}", tmp_path / "run"
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    common = [
        "--address",
        address,
        "--insecure",
        "--clients",
        "3",
        "--partition",
        "iid",
        "--run-dir",
        str(run_dir),
        "--registry-uri",
        registry,
        "--set",
        "federated.round_timeout_s=60",
        # Every round waits for all three: with the spec's 2, a resumed round 2 could start
        # before the third new client joined, and the kill below then left one answer.
        "--set",
        "federated.min_available_clients=3",
    ]

    # 1. The server stops after round 1 (checkpointed); its clients leave when it is gone.
    first = processes.start("server", "server", str(spec), *common, "--stop-after-round", "1")
    clients = start_clients(processes, spec, address, files)
    assert first.wait(timeout=240) == 0, processes.log("server")
    assert "stopped after round 1" in processes.log("server")
    for client in clients:
        assert client.wait(timeout=60) == 0, processes.log("client-0")

    # 2. Resumed with new client processes; client 2 is SIGKILLed inside round 2's training.
    second = processes.start("server-2", "server", str(spec), *common, "--resume")
    hang = {HANG_ENV: "2:2", HANG_MARKER_DIR_ENV: str(tmp_path)}
    clients = start_clients(processes, spec, address, files, env=hang, tag="-2")
    wait_for(tmp_path / "hang-2-2", second)
    os.kill(clients[2].pid, signal.SIGKILL)
    assert second.wait(timeout=240) == 0, processes.log("server-2")
    lines = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert [line["clients"] for line in lines] == [[0, 1, 2], [0, 1]]
    # New SuperNodes, new Flower node ids: the log names the dead one by its node id.
    (failure,) = lines[1]["failed"]
    killed_node = re.findall(
        r"SuperNode ID: (\d+)", (files[2].with_suffix(".client.log")).read_text()
    )[-1]
    assert failure["node_id"] == int(killed_node)
    assert failure["stage"] == "train"
    assert f"(node {killed_node})" in processes.log("server-2")
    assert (run_dir / "rounds.png").stat().st_size > 10_000

    # 3. The same job simulated without a stop, client 2 failing in round 2 as above:
    # the same partitions, seeds and client order give the same parameters.
    monkeypatch.setenv(FAIL_ENV, "2:2")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    fjob = load_federated_job(spec, [("run_dir", str(tmp_path / "sim")), ("export.enabled", False)])
    simulated = simulate_job(fjob, clients=3, scheme=parse_scheme("iid"), quiet=True)
    # Separate clientapp processes may sum in another order than the in-process simulation
    # (thread counts differ): equal up to float32 reassociation, far below one SGD step.
    assert max_difference(final_state(run_dir), final_state(simulated.run.root)) < 1e-6

    # 4. Registered with its lineage, exported, and served.
    from aiaas.registry.api import Registry

    with Registry.open(uri=registry) as opened:
        (version,) = opened.versions("digits")
    assert version.params is not None
    assert {
        key: version.params[key]
        for key in (
            "clients",
            "partition",
            "partition_declared",
            "strategy",
            "rounds",
            "samples_per_client",
        )
    } == {
        "clients": 3,
        "partition": "client files",  # each client trained on its own file
        "partition_declared": "iid",
        "strategy": "fedavg",
        "rounds": 2,
        "samples_per_client": [479, 479, 479],
    }
    assert version.params["federated"]["min_fit_clients"] == 2
    # Each client's file, as the client reported it: the hash `aiaas train` gives an .npz.
    assert version.params["client_data"] == [
        {
            "client": index,
            "dataset_fingerprint": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
            "examples": 479,
        }
        for index, path in enumerate(files)
    ]
    assert version.metrics["server_eval_accuracy"] == lines[1]["server_eval_accuracy"]
    assert "rounds.jsonl" in {item.path for item in version.files}

    served = start_server(run_dir / "model_repository")
    sample = np.load(files[0])["x"][:2]
    reply = httpx.post(
        f"{served.url}/v2/models/digits/infer",
        json={
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 64],
                    "datatype": "FP32",
                    "data": sample.ravel().tolist(),
                }
            ]
        },
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    scores = np.array(reply.json()["outputs"][0]["data"]).reshape(2, 10)
    with torch.no_grad():
        expected_scores = _model(run_dir)(torch.from_numpy(sample)).numpy()
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)


def _model(run_dir: Path):
    from aiaas.train.examples import digits_mlp

    model = digits_mlp(hidden=32)
    model.load_state_dict(final_state(run_dir))
    return model.eval()


def test_a_client_whose_server_cannot_be_reached_says_so_and_fails(tmp_path, processes):
    spec = write_spec(tmp_path)
    (path,) = partition_files(spec, tmp_path, 1)
    client = processes.start(
        "lonely",
        "client",
        str(spec),
        "--server",
        f"127.0.0.1:{free_port()}",
        "--data",
        str(path),
        "--insecure",
        "--retries",
        "2",
        "--max-wait",
        "3",
    )
    assert client.wait(timeout=120) == 4  # unavailable, in aiaas/exit_codes.py's table
    errors = [line for line in processes.log("lonely").splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "cannot reach the Flower server at 127.0.0.1:" in errors[0]
    assert "after 2 attempts" in errors[0]
