"""Triton's asynchronous clients against aiaas: tritonclient.http's gevent-based
async_infer, tritonclient.http.aio (aiohttp) and tritonclient.grpc's callback
async_infer. Concurrent requests must each get their own rows back, and the
statistics, read through the same clients, must count exactly what was sent."""

from __future__ import annotations

import asyncio
import queue
from pathlib import Path

import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient

CONFIG = "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 20000 }\n"
LABELLED = 'output [{ name: "y" data_type: TYPE_FP32 dims: [4] label_filename: "labels.txt" }]\n'
ROWS = [1, 2, 1, 3, 1, 2, 1, 1]


@pytest.fixture
def server(tmp_path: Path, start_server):
    repo = tmp_path / "repo"
    models.save(models.batch_probe(), repo, "probe", config=CONFIG)
    models.save(models.identity("FP32"), repo, "labelled", config=LABELLED)
    (repo / "labelled" / "labels.txt").write_text("cat\ndog\nbird\nfish\n")
    return start_server(repo)


def request_inputs(module, index: int, rows: int):
    """Rows filled with the request's index, so a mixed-up answer shows."""
    x = module.InferInput("x", [rows, 4], "FP32")
    x.set_data_from_numpy(np.full((rows, 4), index, np.float32))
    return [x]


def check_answers(answers: dict[int, np.ndarray]) -> None:
    for index, y in answers.items():
        np.testing.assert_array_equal(y, np.full((ROWS[index], 4), index, np.float32))


def check_statistics(stats: dict, requests: int, rows: int) -> None:
    (model,) = stats["model_stats"]
    assert model["inference_stats"]["success"]["count"] == requests
    assert model["inference_count"] == rows
    executed = sum(b["batch_size"] * b["compute_infer"]["count"] for b in model["batch_stats"])
    assert executed == rows
    assert model["execution_count"] == sum(
        b["compute_infer"]["count"] for b in model["batch_stats"]
    )


def test_http_async_infer_on_gevent(server):
    client = httpclient.InferenceServerClient(
        server.url.removeprefix("http://"), concurrency=len(ROWS)
    )
    pending = {
        i: client.async_infer("probe", request_inputs(httpclient, i, rows))
        for i, rows in enumerate(ROWS)
    }
    check_answers({i: p.get_result().as_numpy("y") for i, p in pending.items()})
    check_statistics(client.get_inference_statistics("probe"), len(ROWS), sum(ROWS))
    client.close()


def test_http_aio_client(server):
    async def run() -> None:
        client = aiohttpclient.InferenceServerClient(server.url.removeprefix("http://"))
        try:
            results = await asyncio.gather(
                *(client.infer("probe", request_inputs(aiohttpclient, i, rows))
                  for i, rows in enumerate(ROWS))
            )  # fmt: skip
            check_answers({i: r.as_numpy("y") for i, r in enumerate(results)})
            stats = await client.get_inference_statistics("probe")
            check_statistics(stats, len(ROWS), sum(ROWS))
            assert (await client.get_model_config("probe"))["max_batch_size"] == 8
        finally:
            await client.close()

    asyncio.run(run())


def test_grpc_callback_async_infer(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    done: queue.Queue = queue.Queue()
    for i, rows in enumerate(ROWS):
        client.async_infer(
            "probe",
            request_inputs(grpcclient, i, rows),
            callback=lambda result, error, i=i: done.put((i, result, error)),
        )
    answers = {}
    for _ in ROWS:
        i, result, error = done.get(timeout=60)
        assert error is None, error
        answers[i] = result.as_numpy("y")
    check_answers(answers)
    stats = client.get_inference_statistics("probe", as_json=True)
    (model,) = stats["model_stats"]
    assert int(model["inference_count"]) == sum(ROWS)
    client.close()


def test_classification_over_grpc(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    x = grpcclient.InferInput("x", [2, 4], "FP32")
    x.set_data_from_numpy(np.array([[0.1, 0.9, 0.5, 0.2], [3.0, 1.0, 2.0, 0.0]], np.float32))
    wanted = grpcclient.InferRequestedOutput("y", class_count=2)
    result = client.infer("labelled", [x], outputs=[wanted]).as_numpy("y")
    assert result.tolist() == [
        [b"0.900000:1:dog", b"0.500000:2:bird"],
        [b"3.000000:0:cat", b"2.000000:2:bird"],
    ]
    client.close()
