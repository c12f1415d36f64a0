"""Model control: polling picks up changes, swaps never fail a request, priorities."""

from __future__ import annotations

import concurrent.futures
import shutil
import threading
import time

import httpx
import models
import numpy as np
import pytest
from traffic import VersionedTraffic, assert_clean_swaps, infer, wait_for

pytestmark = pytest.mark.both_workers

POLL = ("--model-control-mode", "poll", "--repository-poll-secs", "0.2")


def versions(client: httpx.Client, name: str) -> list[str]:
    response = client.get(f"/v2/models/{name}")
    return response.json()["versions"] if response.status_code == 200 else []


def test_poll_mode_follows_new_removed_and_corrupted_versions(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_constant(1), repo, "m", 1)
    server = start_server(repo, *POLL)
    x = np.zeros((1, 4), np.float32)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert versions(client, "m") == ["1"]
        models.save(models.add_constant(2), repo, "m", 2)
        wait_for(lambda: versions(client, "m") == ["2"])
        assert infer(client, "m", x).json()["outputs"][0]["data"] == [2.0] * 4

        shutil.rmtree(repo / "m" / "2")
        wait_for(lambda: versions(client, "m") == ["1"])
        assert infer(client, "m", x).json()["outputs"][0]["data"] == [1.0] * 4

        (repo / "m" / "1" / "model.onnx").write_bytes(b"corrupted")
        wait_for(lambda: "failed to load 'm'" in client.post("/v2/repository/index").text)
        # the old session keeps serving
        assert infer(client, "m", x).json()["outputs"][0]["data"] == [1.0] * 4
        time.sleep(1.0)  # five more polls: the broken state is not retried until it changes
        assert server.logs().count("failed to load 'm'") == 1

        models.save(models.add_constant(5), repo, "new_model", 1)
        wait_for(lambda: versions(client, "new_model") == ["1"])
        shutil.rmtree(repo / "new_model")
        wait_for(lambda: client.get("/v2/models/new_model").status_code == 404)
        assert "Traceback" not in server.logs()


def test_version_swaps_under_load_fail_no_request(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(
        models.add_constant(1), repo, "m", 1, config="max_batch_size: 16\ndynamic_batching { }"
    )
    server = start_server(repo, *POLL)
    with VersionedTraffic(server.url, "m") as traffic:
        traffic.everyone_on(1)
        models.save(models.add_constant(2), repo, "m", 2)
        traffic.everyone_on(2)
        models.save(models.add_constant(3), repo, "m", 3)
        traffic.everyone_on(3)
    assert_clean_swaps(traffic, {1, 2, 3})


PRIORITY = """
max_batch_size: 1
dynamic_batching {
  priority_levels: 2
  default_priority_level: 2
}
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""


def test_higher_priority_requests_overtake_queued_ones(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.batch_probe(depth=400), repo, "slow", config=PRIORITY)
    server = start_server(repo)
    done: list[str] = []
    lock = threading.Lock()

    def send(tag: str, priority: int | None) -> int:
        body = {
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]
        }
        if priority is not None:
            body["parameters"] = {"priority": priority}
        response = httpx.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=60)
        with lock:
            done.append(tag)
        return response.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        low = [pool.submit(send, f"low{i}", None) for i in range(6)]
        time.sleep(0.3)  # the low-priority requests are queued behind the first one
        high = pool.submit(send, "high", 1)
        statuses = [f.result() for f in [*low, high]]
    assert statuses == [200] * 7
    assert done.index("high") < len(done) - 2, done
    bad = httpx.post(
        f"{server.url}/v2/models/slow/infer",
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}],
              "parameters": {"priority": 3}},
    )  # fmt: skip
    assert bad.status_code == 400
    assert "priority 3" in bad.json()["error"]
