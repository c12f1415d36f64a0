"""The batcher object in-process: closing it (as a version swap does) loses no request."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from aiaas.errors import Unavailable
from aiaas.serve.batching import Batcher
from aiaas.serve.serving_config import BatchingConfig, QueuePolicy
from aiaas.serve.stats import ModelStats


def double(instance, inputs, names):
    return {"y": inputs["x"] * 2}


def batcher(max_queue_delay_us: int, preferred: tuple[int, ...] = (), run=double) -> Batcher:
    policy = QueuePolicy(
        max_queue_size=100,
        default_timeout_us=0,
        allow_timeout_override=True,
        delay_on_timeout=False,
    )
    config = BatchingConfig(
        max_queue_delay_us=max_queue_delay_us,
        preferred_batch_sizes=preferred,
        priority_levels=0,
        default_priority_level=0,
        queue_policies={0: policy},
    )
    return Batcher(
        run, max_batch_size=8, batching=config, instance_count=1, stats=ModelStats("m", "1")
    )


def test_close_while_a_batch_waits_for_company_still_answers_it():
    """The batch is out of the queue but not yet run: close() must wait for it, not drop it."""

    async def scenario() -> list[np.ndarray]:
        b = batcher(max_queue_delay_us=300_000)
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        first = asyncio.create_task(b.infer({"x": x}, ["y"]))
        second = asyncio.create_task(b.infer({"x": x + 1}, ["y"]))
        await asyncio.sleep(0.05)  # both taken into a batch that waits 300 ms for more
        await asyncio.wait_for(b.close(), 5)
        return [r["y"] for r in await asyncio.wait_for(asyncio.gather(first, second), 5)]

    first, second = asyncio.run(scenario())
    np.testing.assert_array_equal(first, np.arange(4, dtype=np.float32).reshape(1, 4) * 2)
    np.testing.assert_array_equal(second, (np.arange(4, dtype=np.float32).reshape(1, 4) + 1) * 2)


def test_a_batch_that_fills_runs_at_once_without_waiting_out_its_queue_delay():
    """The batch waits up to 60 s for company; its eighth row fills it, so it runs then."""
    sizes: list[int] = []

    def record(instance, inputs, names):
        sizes.append(inputs["x"].shape[0])
        return double(instance, inputs, names)

    async def scenario() -> list[np.ndarray]:
        b = batcher(max_queue_delay_us=60_000_000, run=record)
        rows = [np.full((1, 4), i, np.float32) for i in range(8)]
        first = asyncio.create_task(b.infer({"x": rows[0]}, ["y"]))
        await asyncio.sleep(0.05)  # the batch has formed around the first and waits
        rest = [asyncio.create_task(b.infer({"x": x}, ["y"])) for x in rows[1:]]
        results = await asyncio.wait_for(asyncio.gather(first, *rest), 10)
        await b.close()
        return [r["y"] for r in results]

    results = asyncio.run(scenario())
    assert sizes == [8]
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, np.full((1, 4), 2 * i, np.float32))


def test_a_long_queue_is_cut_into_batches_of_the_largest_preferred_size():
    sizes: list[int] = []

    def record(instance, inputs, names):
        sizes.append(inputs["x"].shape[0])
        return double(instance, inputs, names)

    async def scenario() -> list[np.ndarray]:
        b = batcher(max_queue_delay_us=100_000, preferred=(2, 3), run=record)
        rows = [np.full((1, 4), i, np.float32) for i in range(7)]
        results = await asyncio.gather(*(b.infer({"x": x}, ["y"]) for x in rows))
        await b.close()
        return [r["y"] for r in results]

    results = asyncio.run(scenario())
    assert sizes == [3, 3, 1]
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, np.full((1, 4), 2 * i, np.float32))


def test_each_priority_level_is_bounded_on_its_own():
    """A full low-priority queue refuses low-priority requests only: a high-priority one
    still gets in (Triton's priority_queue_policy bounds each level's queue alone)."""
    running = threading.Event()
    release = threading.Event()

    def held(instance, inputs, names):
        running.set()
        release.wait(10)
        return double(instance, inputs, names)

    def policy(max_queue_size: int) -> QueuePolicy:
        return QueuePolicy(
            max_queue_size=max_queue_size,
            default_timeout_us=0,
            allow_timeout_override=False,
            delay_on_timeout=False,
        )

    config = BatchingConfig(
        max_queue_delay_us=0,
        preferred_batch_sizes=(),
        priority_levels=2,
        default_priority_level=2,
        queue_policies={0: policy(2), 1: policy(2), 2: policy(2)},
    )
    x = np.ones((1, 4), np.float32)

    async def scenario() -> tuple[str, list[np.ndarray]]:
        b = Batcher(
            held, max_batch_size=8, batching=config, instance_count=1, stats=ModelStats("m", "1")
        )
        first = asyncio.create_task(b.infer({"x": x}, ["y"], priority=2))
        await asyncio.to_thread(running.wait, 10)  # the only instance is busy with it
        low = [asyncio.create_task(b.infer({"x": x}, ["y"], priority=2)) for _ in range(2)]
        await asyncio.sleep(0)  # both queued: the low-priority queue is full
        assert b.queue_depth == 2
        with pytest.raises(Unavailable, match="priority 2 queue is full") as refused:
            await b.infer({"x": x}, ["y"], priority=2)
        high = asyncio.create_task(b.infer({"x": x}, ["y"], priority=1))
        await asyncio.sleep(0)
        assert b.queue_depth == 3
        release.set()
        results = await asyncio.wait_for(asyncio.gather(first, high, *low), 10)
        await b.close()
        return refused.value.message, [r["y"] for r in results]

    message, results = asyncio.run(scenario())
    assert "max_queue_size 2" in message
    assert len(results) == 4
    for y in results:
        np.testing.assert_array_equal(y, x * 2)
