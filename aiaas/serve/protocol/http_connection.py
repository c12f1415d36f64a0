"""uvicorn's httptools connection, bounded: headers over a size answer 431, and a client
too slow to send its headers or its body is answered 408 and closed.

uvicorn bounds neither with httptools (its h11 limit is for h11 only, and its keep-alive
timeout starts only after a first response), so a connection that sends a header byte
a second, or a body byte a second, would be held open for as long as the client likes.
Closing the connection also tells a handler waiting on the body that the client left
(`http.disconnect`), so its slot is freed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class _HeadersTooLarge(Exception):
    """Raised from a parser callback; httptools re-raises it wrapped from feed_data."""


def bounded_protocol(
    *, max_header_bytes: int, header_timeout_s: float, body_timeout_s: float
) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn's Config(http=...) for these bounds."""

    class BoundedHttpTools(_BoundedHttpTools):
        pass

    BoundedHttpTools.max_header_bytes = max_header_bytes
    BoundedHttpTools.header_timeout_s = header_timeout_s
    BoundedHttpTools.body_timeout_s = body_timeout_s
    return BoundedHttpTools


class _BoundedHttpTools(HttpToolsProtocol):
    max_header_bytes = 16 * 1024
    header_timeout_s = 10.0
    body_timeout_s = 120.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        #: Nothing sent yet on this connection: it is closed, not answered, when late.
        self._silent = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing at all is closed like an idle keep-alive one.
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__cause__, _HeadersTooLarge) or self._header_bytes > (
                self.max_header_bytes
            ):
                self._refuse(431, "request headers are larger than the server accepts")
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:  # as uvicorn's: no WebSocket routes here
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # ---- parser callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._silent = False
        self._header_bytes = 0
        self._arm(self.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # ---- internals -----------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answered = self._silent or (cycle is not None and cycle.response_started)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the handler reads http.disconnect; its sends are dropped
            cycle.message_event.set()
        if answered:
            self.transport.close()  # nothing asked, or an answer has begun: nothing to say
            return
        self._refuse(408, "the request was not received in time")

    def _refuse(self, status: int, message: str) -> None:
        body = ('{"error":"' + message + '"}').encode()
        head = [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join([*head, body]))
        self.transport.close()
