"""The model repository extension over gRPC (explicit mode), and the gRPC server's
life: it stops gracefully with the process, and `--grpc-port 0` turns it off."""

from __future__ import annotations

import concurrent.futures
import json
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from ports import free_port
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
EXPLICIT = ("--model-control-mode", "explicit", "--load-model", "first")


def add_sub_inputs(rows: int = 1) -> list[grpcclient.InferInput]:
    inputs = [grpcclient.InferInput(n, [rows, 4], "INT32") for n in ("a", "b")]
    for infer_input in inputs:
        infer_input.set_data_from_numpy(np.ones((rows, 4), np.int32))
    return inputs


def test_explicit_mode_loads_and_unloads_over_grpc(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "first")
    models.save(models.add_sub(), repo, "second")
    server = start_server(repo, *EXPLICIT)
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
        assert client.is_model_ready("first")
        assert not client.is_model_ready("second")
        client.load_model("second")
        assert client.is_model_ready("second")
        np.testing.assert_array_equal(
            client.infer("second", add_sub_inputs()).as_numpy("sum"), np.full((1, 4), 2)
        )
        client.unload_model("first")
        assert not client.is_model_ready("first")
        rows = {m.name: m for m in client.get_model_repository_index().models}
        assert (rows["first"].state, rows["first"].reason) == ("UNAVAILABLE", "unloaded")
        assert (rows["second"].state, rows["second"].version) == ("READY", "1")
        with pytest.raises(InferenceServerException) as missing:
            client.load_model("nothing")
        assert missing.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert missing.value.message().startswith("failed to load 'nothing'")


def test_load_with_a_config_override_serves_that_config(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "first")
    server = start_server(repo, *EXPLICIT)
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
        assert client.get_model_config("first").config.max_batch_size != 2
        client.load_model("first", config=json.dumps({"max_batch_size": 2}))
        assert client.get_model_config("first").config.max_batch_size == 2
        with pytest.raises(InferenceServerException, match="max_batch_size 2") as too_big:
            client.infer("first", add_sub_inputs(rows=3))
        assert too_big.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException, match="failed to load 'first'") as bad:
            client.load_model("first", config="{not json")
        assert bad.value.status() == "StatusCode.INVALID_ARGUMENT"
        # A failed reload leaves the previous configuration serving.
        assert client.get_model_config("first").config.max_batch_size == 2


def pending_requests(server) -> int:
    """Requests waiting in the server's queues now, from its Prometheus gauge."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    lines = [line for line in text.splitlines() if line.startswith("aiaas_inference_pending")]
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


SERIAL_SLOW = """
max_batch_size: 1
dynamic_batching { }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_grpc_requests_in_flight_then_exits_0(tmp_path, start_server, sig):
    repo = tmp_path / "repo"
    models.save(models.batch_probe(depth=600), repo, "slow", config=SERIAL_SLOW)
    server = start_server(repo)
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(4)]

    def send(x: np.ndarray) -> np.ndarray:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
            infer_input = grpcclient.InferInput("x", [1, 4], "FP32")
            infer_input.set_data_from_numpy(x)
            return client.infer("slow", [infer_input], client_timeout=60).as_numpy("y")

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        futures = [pool.submit(send, x) for x in inputs]
        # One request runs, the others wait in the queue: all of them are in flight.
        wait_for(lambda: pending_requests(server) == len(inputs) - 1)
        server.process.send_signal(sig)
        answers = [f.result() for f in futures]
    for x, y in zip(inputs, answers, strict=True):
        np.testing.assert_array_equal(y, x)
    assert server.process.wait(30) == 0
    with (
        grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client,
        pytest.raises(InferenceServerException, match="UNAVAILABLE"),
    ):
        client.is_server_live(client_timeout=2)
    assert "Traceback" not in server.logs()


def test_grpc_port_0_turns_the_grpc_front_end_off(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "first")
    server = start_server(repo, "--grpc-port", "0")
    with (
        grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client,
        pytest.raises(InferenceServerException, match="UNAVAILABLE"),
    ):
        client.is_server_live(client_timeout=2)
    assert "gRPC" not in server.logs()


def test_an_idle_open_stream_does_not_hold_up_shutdown(tmp_path, start_server, monkeypatch):
    # A grace period far longer than the wait below: exiting within it proves the
    # stream was ended, not waited out.
    monkeypatch.setenv("AIAAS_SHUTDOWN_TIMEOUT_S", "600")
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "first")
    server = start_server(repo)
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("first", add_sub_inputs(), request_id="only")
        result, error = answers.get(timeout=60)
        assert error is None
        assert result.get_response().id == "only"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
    finally:
        client.stop_stream()
        client.close()
    assert "Traceback" not in server.logs()


def test_load_with_passed_model_files_serves_them(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_constant(1), repo, "m")
    server = start_server(repo, "--model-control-mode", "explicit", "--load-model", "m")
    uploaded = models.add_constant(5).SerializeToString()
    x = np.zeros((1, 4), np.float32)
    infer_input = grpcclient.InferInput("x", [1, 4], "FP32")
    infer_input.set_data_from_numpy(x)
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
        np.testing.assert_array_equal(client.infer("m", [infer_input]).as_numpy("y"), x + 1)
        config = json.dumps({"backend": "onnxruntime"})
        client.load_model("m", config=config, files={"file:1/model.onnx": uploaded})
        np.testing.assert_array_equal(client.infer("m", [infer_input]).as_numpy("y"), x + 5)
        with pytest.raises(InferenceServerException, match="without a 'config'") as refused:
            client.load_model("m", files={"file:1/model.onnx": uploaded})
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_a_grpc_port_in_use_fails_the_start_instead_of_being_shared(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "first")
    first = start_server(repo)
    second = subprocess.run(
        [
            sys.executable, "-m", "aiaas.cli", "serve", "--model-repository", str(repo),
            "--http-port", str(free_port()), "--grpc-port", str(first.grpc_port),
        ],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert second.returncode == 4  # unavailable, in aiaas/exit_codes.py's table
    assert second.stderr.startswith(f"error: cannot listen for gRPC on 127.0.0.1:{first.grpc_port}")
    assert second.stderr.count("\n") == 1, second.stderr
    with grpcclient.InferenceServerClient(f"127.0.0.1:{first.grpc_port}") as client:
        assert client.is_server_live()
