"""Running one request's generations on an engine: every choice (and every prompt) at
once, their errors before the first token raised while an HTTP status can still
say so, and their deltas merged into one stream in arrival order.

Shared by the OpenAI routes and Triton's generate extension; knows the engine's
API and nothing about either wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiaas.serve.llm.types import GenerationDelta, SamplingParams

Stream = AsyncIterator[GenerationDelta]
_END = object()


@dataclass(frozen=True)
class Job:
    """One sequence to generate: its choice index in the answer, prompt and sampling."""

    index: int
    prompt: str | list[int]
    params: SamplingParams
    request_id: str


async def _close(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def _open(engine: Any, job: Job) -> Stream:
    started = engine.generate(job.prompt, job.params, job.request_id)
    if inspect.isawaitable(started):
        started = await started
    return started  # type: ignore[no-any-return]


async def _prepend(
    first: GenerationDelta | None, stream: Stream
) -> AsyncGenerator[GenerationDelta, None]:
    try:
        if first is not None:
            yield first
            if first.finish_reason is not None:
                return
        async for delta in stream:
            yield delta
    finally:
        await _close(stream)


async def _first(engine: Any, job: Job) -> tuple[Stream, GenerationDelta | None]:
    stream = await _open(engine, job)
    try:
        return stream, await anext(stream)
    except StopAsyncIteration:
        return stream, None
    except BaseException:
        await _close(stream)
        raise


async def start(engine: Any, jobs: list[Job]) -> list[Stream]:
    """Submit every job and wait for each one's first delta, so that what the engine
    refuses up front (context too long, queue full) is raised here, before any byte
    of the answer is sent. On a failure, or when cancelled, the others are closed."""
    tasks = [asyncio.ensure_future(_first(engine, job)) for job in jobs]
    try:
        await asyncio.wait(tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        await _close_started(tasks)
        raise
    failure = next((t.exception() for t in tasks if t.exception() is not None), None)
    if failure is not None:
        await _close_started(tasks)
        raise failure
    return [_prepend(first, stream) for stream, first in (t.result() for t in tasks)]


async def _close_started(
    tasks: Sequence[asyncio.Future[tuple[Stream, GenerationDelta | None]]],
) -> None:
    for task in tasks:
        if not task.cancelled() and task.exception() is None:
            await _close(task.result()[0])


async def merged(streams: list[Stream]) -> AsyncGenerator[tuple[int, GenerationDelta], None]:
    """(position in ``streams``, delta) as they come; an error in any stream ends all."""
    if len(streams) == 1:
        try:
            async for delta in streams[0]:
                yield 0, delta
        finally:
            await _close(streams[0])
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(position: int, stream: Stream) -> None:
        try:
            async for delta in stream:
                queue.put_nowait((position, delta))
            queue.put_nowait((position, _END))
        except Exception as error:
            queue.put_nowait((position, error))
        finally:
            await _close(stream)

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            position, item = await queue.get()
            if item is _END:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield position, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
