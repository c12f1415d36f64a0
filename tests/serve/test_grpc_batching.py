"""gRPC requests go through the same dynamic batcher as REST: merged calls, own rows
back, bounded queues answered UNAVAILABLE, per-request timeouts honoured by Triton's rule."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from pathlib import Path

import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from test_batching import (
    BATCHED,
    OVERRIDABLE,
    OVERRIDABLE_NO_DEFAULT,
    QUEUE_TIMEOUT,
    SERIAL,
    SLOW_DEPTH,
    SMALL_QUEUE,
)
from tritonclient.utils import InferenceServerException

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.batch_probe(depth=SLOW_DEPTH), repo, "probe", config=BATCHED)
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


def address(server) -> str:
    return f"127.0.0.1:{server.grpc_port}"


def probe_input(x: np.ndarray) -> list[grpcclient.InferInput]:
    infer_input = grpcclient.InferInput("x", list(x.shape), "FP32")
    infer_input.set_data_from_numpy(x)
    return [infer_input]


def fire(server, model: str, inputs: list[np.ndarray], **kwargs) -> list:
    """Send every input at once, each from its own thread and client, released together;
    returns each InferResult or the InferenceServerException it raised."""
    start = threading.Barrier(len(inputs))

    def send(x: np.ndarray):
        client = grpcclient.InferenceServerClient(address(server))
        try:
            start.wait()
            return client.infer(model, probe_input(x), **kwargs)
        except InferenceServerException as error:
            return error
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(send, inputs))


def counts(server, model: str) -> tuple[int, int]:
    """(requests answered, model executions) from the statistics extension."""
    with grpcclient.InferenceServerClient(address(server)) as client:
        stats = client.get_inference_statistics(model).model_stats[0]
    return stats.inference_stats.success.count, stats.execution_count


def test_concurrent_grpc_requests_are_merged_and_each_gets_its_own_rows(server):
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(24)]
    requests_before, executions_before = counts(server, "probe")
    results = fire(server, "probe", inputs)
    for x, result in zip(inputs, results, strict=True):
        assert not isinstance(result, Exception), result
        np.testing.assert_array_equal(result.as_numpy("y"), x)
        (call_rows,) = set(result.as_numpy("batch").tolist())
        assert x.shape[0] <= call_rows <= 16
    requests, executions = counts(server, "probe")
    assert requests - requests_before == len(inputs)
    # The model ran fewer times than it was asked: some executions held several requests.
    assert executions - executions_before < len(inputs)


def test_requests_on_one_stream_share_batches(server):
    requests_before, executions_before = counts(server, "probe")
    answers: queue.Queue = queue.Queue()
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(16)]
    with grpcclient.InferenceServerClient(address(server)) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            for index, x in enumerate(inputs):
                client.async_stream_infer("probe", probe_input(x), request_id=str(index))
            results = [answers.get(timeout=60) for _ in inputs]
        finally:
            client.stop_stream()
    assert [error for _, error in results] == [None] * len(inputs)
    for result, _ in results:
        index = int(result.get_response().id)
        np.testing.assert_array_equal(result.as_numpy("y"), inputs[index])
    requests, executions = counts(server, "probe")
    assert requests - requests_before == len(inputs)
    assert executions - executions_before < len(inputs)


def test_full_queue_is_unavailable(server):
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(12)]
    results = fire(server, "small_queue", inputs)
    refused = [r for r in results if isinstance(r, Exception)]
    assert refused
    assert len(refused) < len(results)
    for error in refused:
        assert error.status() == "StatusCode.UNAVAILABLE"
        assert "queue is full" in error.message()


def test_request_that_waits_past_its_queue_timeout_is_unavailable(server):
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(6)]
    results = fire(server, "queue_timeout", inputs)
    timed_out = [r for r in results if isinstance(r, Exception)]
    assert timed_out
    assert len(timed_out) < len(results)
    for error in timed_out:
        assert error.status() == "StatusCode.UNAVAILABLE"
        assert "timed out" in error.message()


def test_request_timeout_shortens_the_default_when_the_model_allows_override(server):
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(6)]
    patient = fire(server, "overridable", inputs)
    assert not any(isinstance(r, Exception) for r in patient)
    hasty = fire(server, "overridable", inputs, timeout=1000)
    timed_out = [r for r in hasty if isinstance(r, Exception)]
    assert timed_out
    assert len(timed_out) < len(hasty)
    assert all("timed out" in error.message() for error in timed_out)


@pytest.mark.parametrize("model", ["serial", "overridable_no_default"])
def test_request_timeout_is_ignored_where_the_policy_sets_no_default(server, model):
    inputs = [np.full((1, 4), i, dtype=np.float32) for i in range(6)]
    results = fire(server, model, inputs, timeout=1000)
    assert not [r for r in results if isinstance(r, Exception)]


def test_a_client_that_gives_up_leaves_the_server_serving(server):
    x = np.ones((1, 4), dtype=np.float32)
    with grpcclient.InferenceServerClient(address(server)) as client:
        # Far shorter than one call of this model: the client always gives up first.
        with pytest.raises(InferenceServerException) as gave_up:
            client.infer("serial", probe_input(x), client_timeout=0.001)
        assert gave_up.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        np.testing.assert_array_equal(client.infer("serial", probe_input(x)).as_numpy("y"), x)
    assert "Traceback" not in server.logs()
