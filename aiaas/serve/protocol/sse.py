"""Server-sent events for generation, and the rule that a client who leaves stops it.

Each event is one ``data: <json>`` line and a blank line, as OpenAI's clients and
Triton's generate_stream parse them. The response below watches the connection
while it streams: when the client disconnects, the event source is cancelled and
closed at once, so the engine drops the sequence at its next step instead of
generating for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aiaas.serve import race

DONE = b"data: [DONE]\n\n"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
Result = TypeVar("Result")


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(work: Awaitable[Result], receive: Receive) -> Result | None:
    """``work``'s result, or None once the client disconnects first (``work`` is then
    cancelled, which closes the generations it awaits)."""
    try:
        return await race.unless(work, _disconnected(receive))
    except race.Interrupted:
        return None


class EventStreamResponse(Response):
    """Streams ``events`` (already framed) and stops them when the client disconnects;
    ``on_close`` runs once the stream has ended, however it ended (a stream slot)."""

    def __init__(
        self,
        events: AsyncIterator[bytes],
        extra_headers: Mapping[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(status_code=200)
        self.events = events
        self.extra_headers = [(k.encode(), v.encode()) for k, v in (extra_headers or {}).items()]
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            headers = [*_HEADERS, *self.extra_headers]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            while True:
                step = asyncio.ensure_future(anext(self.events))
                await asyncio.wait({step, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await step
                    return
                try:
                    chunk = step.result()
                except StopAsyncIteration:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            try:
                await self.events.aclose()  # type: ignore[attr-defined]
            finally:
                if self.on_close is not None:
                    self.on_close()
