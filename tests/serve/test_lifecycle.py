"""Shutdown: SIGTERM and SIGINT stop accepting, finish requests in flight, exit 0."""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import models
import numpy as np
import pytest

SERIAL_SLOW = """
max_batch_size: 1
dynamic_batching { }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_requests_in_flight_then_exits_0(tmp_path, start_server, sig):
    repo = tmp_path / "repo"
    models.save(models.batch_probe(depth=600), repo, "slow", config=SERIAL_SLOW)
    server = start_server(repo)
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(4)]

    def send(x):
        body = {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
        return httpx.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        futures = [pool.submit(send, x) for x in inputs]
        time.sleep(0.3)  # let the requests reach the server (not a pass/fail timing)
        server.process.send_signal(sig)
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * len(inputs)
    for x, response in zip(inputs, responses, strict=True):
        assert response.json()["outputs"][0]["data"] == x.ravel().tolist()
    assert server.process.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/health/live", timeout=2)
    assert "Traceback" not in server.logs()
