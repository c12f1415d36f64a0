"""One race, run in several places: a piece of work against an event that makes it moot
(a client that disconnects, a signal that stops the server). Whichever comes first
wins; work that lost is cancelled and awaited, so nothing it holds outlives the race.
No dependency beyond asyncio: the supervisor, which loads no web framework, uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

Result = TypeVar("Result")


class Interrupted(Exception):
    """The event came before the work was done; the work was cancelled."""


async def unless(work: Awaitable[Result], event: Awaitable[object]) -> Result:
    """``work``'s result (or its exception), or Interrupted once ``event`` completes first.
    Whatever the cancelled work raises on its way out is dropped: it no longer matters."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(event)
    lost = False
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            lost = task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if lost:
        raise Interrupted
    return task.result()
