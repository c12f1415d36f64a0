"""Dynamic batching through the real server: merged calls, own rows back, bounded queues."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import httpx
import models
import numpy as np
import pytest
from traffic import fire

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers

SLOW_DEPTH = 150  # about 30 ms of work per model call on this machine

BATCHED = """
max_batch_size: 16
dynamic_batching { max_queue_delay_microseconds: 20000 }
instance_group [ { count: 1 } ]
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""

SMALL_QUEUE = """
max_batch_size: 1
dynamic_batching { default_queue_policy { max_queue_size: 2 } }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""

SERIAL = """
max_batch_size: 1
dynamic_batching { }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""

QUEUE_TIMEOUT = """
max_batch_size: 1
dynamic_batching { default_queue_policy { default_timeout_microseconds: 2000 } }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""

#: A long default timeout that a request may shorten with its own ``timeout``.
OVERRIDABLE = """
max_batch_size: 1
dynamic_batching {
  default_queue_policy { default_timeout_microseconds: 60000000 allow_timeout_override: true }
}
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""

#: Overriding allowed, but no default timeout: as in Triton, a request's is ignored.
OVERRIDABLE_NO_DEFAULT = """
max_batch_size: 1
dynamic_batching { default_queue_policy { allow_timeout_override: true } }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.batch_probe(depth=SLOW_DEPTH), repo, "probe", config=BATCHED)
    models.save(
        models.batch_probe(width="w", depth=SLOW_DEPTH), repo, "probe_any_width", config=BATCHED
    )
    models.save(models.batch_probe(depth=SLOW_DEPTH * 3), repo, "small_queue", config=SMALL_QUEUE)
    models.save(
        models.batch_probe(depth=SLOW_DEPTH * 3), repo, "queue_timeout", config=QUEUE_TIMEOUT
    )
    models.save(models.batch_probe(depth=SLOW_DEPTH * 3), repo, "serial", config=SERIAL)
    models.save(models.batch_probe(depth=SLOW_DEPTH * 3), repo, "overridable", config=OVERRIDABLE)
    models.save(
        models.batch_probe(depth=SLOW_DEPTH * 3),
        repo,
        "overridable_no_default",
        config=OVERRIDABLE_NO_DEFAULT,
    )
    return module_server(repo)


def request_body(x: np.ndarray, **parameters) -> dict:
    body = {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def outputs(response: httpx.Response) -> dict[str, list]:
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(server):
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(24)]
    responses = fire(server.url, "probe", [request_body(x) for x in inputs])
    batch_sizes = []
    for x, response in zip(inputs, responses, strict=True):
        assert response.status_code == 200, response.text
        out = outputs(response)
        np.testing.assert_array_equal(np.array(out["y"], dtype=np.float32).reshape(x.shape), x)
        (call_rows,) = set(out["batch"])
        assert len(out["batch"]) == x.shape[0]
        assert x.shape[0] <= call_rows <= 16
        batch_sizes.append(call_rows)
    # The model ran fewer times than it was asked: some calls held several requests.
    assert max(batch_sizes) > 3


def test_requests_with_different_shapes_are_never_merged(server):
    widths = [4, 8] * 8
    inputs = [np.full((1, w), i, dtype=np.float32) for i, w in enumerate(widths)]
    responses = fire(server.url, "probe_any_width", [request_body(x) for x in inputs])
    for x, response in zip(inputs, responses, strict=True):
        assert response.status_code == 200, response.text
        out = outputs(response)
        np.testing.assert_array_equal(np.array(out["y"], dtype=np.float32).reshape(x.shape), x)
        # at most the 8 requests of the same width can share a call
        assert out["batch"][0] <= 8


def test_full_queue_is_answered_503_at_once(server):
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(12)]
    finished: list[tuple[int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(inputs))

    def send(index: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            start.wait()
            response = client.post(
                f"{server.url}/v2/models/small_queue/infer", json=request_body(inputs[index])
            )
        with lock:
            finished.append((index, response.status_code))
        return response

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        responses = list(pool.map(send, range(len(inputs))))
    statuses = [r.status_code for r in responses]
    assert statuses.count(503) >= 1
    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 503}
    for response in responses:
        if response.status_code == 503:
            assert "queue is full" in response.json()["error"]
    # Refusals do not wait for the queue: every 503 came back before the last success.
    order = [status for _, status in finished]
    assert max(i for i, s in enumerate(order) if s == 503) < max(
        i for i, s in enumerate(order) if s == 200
    )


def test_request_that_waits_past_its_queue_timeout_is_503(server):
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(6)]
    responses = fire(server.url, "queue_timeout", [request_body(x) for x in inputs])
    statuses = [r.status_code for r in responses]
    assert 200 in statuses
    timed_out = [r for r in responses if r.status_code == 503]
    assert timed_out, statuses
    assert all("timed out" in r.json()["error"] for r in timed_out)


def test_request_timeout_shortens_the_default_when_the_model_allows_override(server):
    bodies = [request_body(np.full((1, 4), i, dtype=np.float32)) for i in range(6)]
    patient = fire(server.url, "overridable", bodies)
    assert [r.status_code for r in patient] == [200] * 6
    hasty = [request_body(np.full((1, 4), i, dtype=np.float32), timeout=1000) for i in range(6)]
    responses = fire(server.url, "overridable", hasty)
    statuses = [r.status_code for r in responses]
    assert 200 in statuses
    assert 503 in statuses
    assert all("timed out" in r.json()["error"] for r in responses if r.status_code == 503)


@pytest.mark.parametrize("model", ["serial", "overridable_no_default"])
def test_request_timeout_is_ignored_where_the_policy_sets_no_default(server, model):
    """Triton's rule: a request's timeout may only shorten the policy's, so with no
    default timeout (allow_timeout_override or not) it never cuts a request short."""
    hasty = [request_body(np.full((1, 4), i, dtype=np.float32), timeout=1000) for i in range(6)]
    responses = fire(server.url, model, hasty)
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
