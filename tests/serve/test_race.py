"""The race between a piece of work and the event that makes it moot."""

from __future__ import annotations

import asyncio

import pytest

from aiaas.serve.race import Interrupted, unless


def test_work_done_first_gives_its_result_and_the_watch_is_dropped():
    async def scenario() -> None:
        event = asyncio.Event()
        assert await unless(asyncio.sleep(0, "answer"), event.wait()) == "answer"
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == 1  # only this one: the watcher is gone

    asyncio.run(scenario())


def test_work_that_fails_first_raises_its_own_error():
    async def failing() -> None:
        raise ValueError("its own")

    async def scenario() -> None:
        with pytest.raises(ValueError, match="its own"):
            await unless(failing(), asyncio.Event().wait())

    asyncio.run(scenario())


def test_the_event_first_cancels_the_work_and_waits_for_it_to_end():
    ended: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.01)  # cleaning up takes a moment: it is awaited
            ended.append("cleaned up")
            raise RuntimeError("an error on the way out does not matter any more")

    async def scenario() -> None:
        with pytest.raises(Interrupted):
            await unless(slow(), asyncio.sleep(0.01))
        assert ended == ["cleaned up"]

    asyncio.run(scenario())
