"""The batcher object in-process: closing it (as a version swap does) loses no request."""

from __future__ import annotations

import asyncio

import numpy as np

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
