"""The life of a `--workers 2` server's processes: a killed front end is replaced while
the other answers; a killed engine is 503 / UNAVAILABLE at once (never a hang) until
its successor has the models back; a killed supervisor takes its children with it;
SIGTERM and Ctrl-C finish what is in flight, stop everything and exit 0 leaving
nothing behind; a port in use is one line before anything starts."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from ports import free_port
from processes import ROOT, server_env
from tritonclient.utils import InferenceServerException
from worker_pids import (
    ENGINE,
    FRONT_END,
    alive,
    all_serving,
    children,
    unix_socket_paths,
    wait_for,
)

X = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
#: Each request runs alone and takes a while: several are in flight when a signal comes.
SERIAL_SLOW = """
max_batch_size: 1
dynamic_batching { }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""
ENGINE_DOWN = "the engine process is not answering"


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.identity("FP32"), repo, "identity")
    return all_serving(module_server(repo, "--workers", "2"))


def infer(url: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/identity/infer", json=X, timeout=timeout)


def reached(url: str, model: str) -> float:
    """Requests that reached the model: waiting in its queue now or already answered,
    from one /metrics scrape (the one that runs is in neither)."""
    lines = httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
    total = 0.0
    for name in ("aiaas_inference_pending_request_count", "aiaas_inference_request_success_total"):
        prefix = f'{name}{{model="{model}",version="1"}} '
        total += float(next(line for line in lines if line.startswith(prefix)).split()[-1])
    return total


def grpc_infer(port: int) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    given = grpcclient.InferInput("x", [1, 4], "FP32")
    given.set_data_from_numpy(np.ones((1, 4), np.float32))
    try:
        client.infer("identity", [given], client_timeout=30)
    finally:
        client.close()


def test_a_killed_front_end_is_replaced_while_the_other_answers(server):
    supervisor = server.process.pid
    killed, kept = children(supervisor, FRONT_END)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: not alive(killed), "the front end to die")
    for _ in range(8):  # new connections: only the living front end listens now
        assert infer(server.url).status_code == 200
    wait_for(lambda: len(children(supervisor, FRONT_END)) == 2, "a new front end")
    assert kept in children(supervisor, FRONT_END)
    assert killed not in children(supervisor, FRONT_END)
    grpc_infer(server.grpc_port)
    assert infer(server.url).status_code == 200


def test_a_killed_engine_is_503_at_once_then_comes_back_with_its_models(server):
    supervisor = server.process.pid
    (engine,) = children(supervisor, ENGINE)
    # The supervisor is paused so that the engine stays down while the test looks.
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(engine, signal.SIGKILL)
        wait_for(lambda: not alive(engine), "the engine to die")
        for path in ("/v2/models/identity/infer", "/v2/models/identity"):
            method = "POST" if path.endswith("infer") else "GET"
            answer = httpx.request(method, server.url + path, json=X, timeout=30)
            assert answer.status_code == 503, answer.text
            assert ENGINE_DOWN in answer.json()["error"]
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        with pytest.raises(InferenceServerException) as metadata:
            client.get_model_metadata("identity", client_timeout=30)
        assert metadata.value.status() == "StatusCode.UNAVAILABLE"
        client.close()
        with pytest.raises(InferenceServerException) as inference:
            grpc_infer(server.grpc_port)
        assert inference.value.status() == "StatusCode.UNAVAILABLE"
    finally:
        os.kill(supervisor, signal.SIGCONT)
    wait_for(lambda: len(children(supervisor, ENGINE)) == 1, "a new engine")
    wait_for(lambda: infer(server.url).status_code == 200, "the model to answer again")
    grpc_infer(server.grpc_port)
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_a_killed_supervisor_takes_its_children_with_it(server):
    supervisor = server.process.pid
    workers = children(supervisor, ENGINE) + children(supervisor, FRONT_END)
    assert len(workers) == 3
    server.process.kill()
    server.process.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), "every child to end")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_finishes_requests_in_flight_then_everything_exits_0(
    tmp_path, start_server, monkeypatch, request, sig
):
    repo = tmp_path / "repo"
    models.save(models.batch_probe(depth=1200), repo, "slow", config=SERIAL_SLOW)
    # Where the private directory goes: short, since a socket's path has 107 bytes at most.
    run_root = Path(tempfile.mkdtemp(prefix="run-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(run_root, ignore_errors=True))
    monkeypatch.setenv("TMPDIR", str(run_root))
    server = all_serving(start_server(repo, "--workers", "2"))
    (run_dir,) = run_root.glob("aiaas-serve-*")
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert {path.suffix for path in run_dir.iterdir()} == {".sock", ".ipc"}
    workers = children(server.process.pid, ENGINE) + children(server.process.pid, FRONT_END)
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(4)]

    def send(x: np.ndarray) -> httpx.Response:
        body = {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
        return httpx.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        futures = [pool.submit(send, x) for x in inputs]
        # All four have reached the model once three are queued or answered beside the
        # one that runs alone (a front end that had not read its request yet would close
        # it unread); on a busy machine one may be answered before the last arrives.
        wait_for(lambda: reached(server.url, "slow") >= 3, "the requests to reach the model")
        server.process.send_signal(sig)
        answers = [future.result() for future in futures]
    assert [answer.status_code for answer in answers] == [200] * len(inputs)
    for x, answer in zip(inputs, answers, strict=True):
        assert answer.json()["outputs"][0]["data"] == x.ravel().tolist()
    assert server.process.wait(60) == 0
    assert not any(alive(pid) for pid in workers)
    assert not run_dir.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/health/live", timeout=2)
    assert "Traceback" not in server.logs()


def test_a_tmpdir_too_deep_for_a_socket_path_puts_the_private_directory_in_tmp(
    tmp_path, start_server, monkeypatch
):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "add_sub")
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # a socket path under it would not fit
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    server = all_serving(start_server(repo, "--workers", "2"))
    (engine,) = children(server.process.pid, ENGINE)
    folders = {path.parent for path in unix_socket_paths(engine)}
    assert len(folders) == 1, folders
    (run_dir,) = folders
    assert run_dir.parent == Path("/tmp")
    assert run_dir.name.startswith("aiaas-serve-")
    assert list(deep.glob("aiaas-serve-*")) == []
    assert httpx.get(f"{server.url}/v2/models/add_sub/ready", timeout=30).status_code == 200
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    assert not run_dir.exists()


def held(port: int, *, shared: bool) -> socket.socket:
    """A port another server holds; ``shared``: as another `--workers` server would."""
    sock = socket.socket()
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


@pytest.mark.parametrize(
    ("taken", "shared"), [("HTTP", False), ("gRPC", False), ("HTTP", True), ("gRPC", True)]
)
def test_a_port_in_use_is_one_line_and_starts_nothing(tmp_path, taken, shared):
    models.save(models.identity("FP32"), tmp_path / "repo", "identity")
    http_port, grpc_port = free_port(), free_port()
    holder = held(http_port if taken == "HTTP" else grpc_port, shared=shared)
    try:
        result = subprocess.run(
            [
                sys.executable, "-m", "aiaas.cli", "serve", "--workers", "2",
                "--model-repository", str(tmp_path / "repo"),
                "--http-port", str(http_port), "--grpc-port", str(grpc_port),
            ],
            env=server_env(), capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
    finally:
        holder.close()
    address = f"127.0.0.1:{http_port if taken == 'HTTP' else grpc_port}"
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(f"error: cannot listen for {taken} on {address}: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "[engine]" not in result.stdout + result.stderr  # no child was started
    for port in (http_port, grpc_port):
        socket.create_server(("127.0.0.1", port)).close()  # nothing left listening
