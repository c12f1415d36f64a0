"""The hop between front-end processes and the engine process: a Unix stream socket.

A front end's ``EngineClient`` connects to the engine's ``EngineService``; a call is a
msgpack header and one frame per tensor, the engine answers each call in its own task,
so a slow model never holds up another, and the reply is matched to its caller by id.
Tensor frames are written from the arrays' own memory and read back as arrays over the
received bytes; nothing is pickled (``hop_codec``; the framing is ``hop_socket``).

Each side sends the calls (or replies) of one event-loop turn as one message: their
headers packed one after another into its first frame, then every call's tensor frames
in order. Under load that is one write per turn per peer, however many calls the turn
made, and the engine's batcher sees the calls of a turn together.

An engine that dies must never leave a client hanging: the connection's end fails every
call in flight with ``Unavailable`` at once; calls made while no engine is connected
fail after a short wait instead of queuing for a dead peer, and the client reconnects by
itself when an engine listens on the address again.

Tensor frames of 64 KiB and more travel through shared memory where both processes can
map it (``hop_arena``): each side of a connection offers the other an arena for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiaas.errors import (
    AiaasError,
    InternalError,
    InvalidArgument,
    Unavailable,
    decode_error,
    encode_error,
)
from aiaas.serve.types import InferRequest, InferResponse
from aiaas.serve.workers import hop_codec as codec
from aiaas.serve.workers.hop_arena import ARENA_BYTES
from aiaas.serve.workers.hop_codec import Buffer
from aiaas.serve.workers.hop_socket import Channel, unix_path

if TYPE_CHECKING:  # the front-end processes run no model: no onnxruntime there
    from aiaas.serve.dataplane import DataPlane

log = logging.getLogger(__name__)

NOT_ANSWERING = "the engine process is not answering (it may be restarting); retry later"
#: How soon a client retries a missing engine, and at most how long it waits between tries.
_RECONNECT_S, _RECONNECT_MAX_S = 0.05, 0.5

#: A reply's header (or an operation's result) and its tensor frames.
Reply = tuple[Any, list[Buffer]]
Op = Callable[..., Awaitable[Any]]


class EngineClient:
    """One per front-end process, on its event loop, shared by every coroutine.

    Requests carry an id, replies are matched to futures. The engine's errors come back
    as the same class with the same message.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 60.0,
        connect_wait_s: float = 1.0,
        first_connect_wait_s: float = 1.0,
        arena_bytes: int = ARENA_BYTES,
    ) -> None:
        self.address = address
        #: Shared memory offered to the engine for large frames (0: all in the socket).
        self.arena_bytes = arena_bytes
        self.timeout_s = timeout_s
        #: How long a new call waits for an engine to be connected before it is refused.
        self.connect_wait_s = connect_wait_s
        #: The same before the first connection: a peer known to be there (a model's
        #: process the engine names) may be given longer on a busy machine.
        self.first_connect_wait_s = first_connect_wait_s
        self._ever_connected = False
        self._connecting: asyncio.Task[None] | None = None
        self._channel: Channel | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._connected = asyncio.Event()
        #: This turn's calls, sent together when the turn ends: (id, header, frames).
        self._outbox: list[tuple[int, bytes, list[Buffer]]] = []

    @property
    def channel(self) -> Channel | None:
        """The connection to the engine, while there is one."""
        return self._channel

    @property
    def connected(self) -> bool:
        """Whether an engine is connected now (it may still die before it answers)."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect, and reconnect whenever the engine goes; needs the running loop."""
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._stay_connected())

    async def close(self) -> None:
        """Stop; calls still in flight fail with Unavailable."""
        self._fail_pending("the front end is shutting down")
        self._connected.clear()
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    async def _stay_connected(self) -> None:
        loop = asyncio.get_running_loop()
        path = unix_path(self.address)
        delay = _RECONNECT_S
        while True:
            try:
                _, channel = await loop.create_unix_connection(
                    lambda: Channel(self._on_reply, arena_bytes=self.arena_bytes), path
                )
            except OSError:  # not listening yet (or any more): the engine is (re)starting
                await asyncio.sleep(delay)
                delay = min(2 * delay, _RECONNECT_MAX_S)
                continue
            delay = _RECONNECT_S
            self._channel = channel
            self._ever_connected = True
            self._connected.set()
            try:
                await asyncio.shield(channel.closed)
            finally:
                self._connected.clear()
                self._channel = None
                channel.close()
                self._fail_pending(NOT_ANSWERING)

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        args, frames = codec.encode_request(name, version, request)
        body, reply_frames = await self._round_trip("infer", args, frames)
        return codec.decode_response(body, reply_frames)

    async def call(self, op: str, **args: Any) -> Any:
        """A small control operation of the engine's (msgpack-able arguments and result)."""
        body, _ = await self._round_trip(op, args, [])
        return body

    async def _round_trip(self, op: str, args: dict[str, Any], frames: list[Buffer]) -> Reply:
        await self._wait_connected()
        request_id = next(self._ids)
        header = codec.pack({"id": request_id, "op": op, "args": args, "frames": len(frames)})
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append((request_id, header, frames))
        try:
            async with asyncio.timeout(self.timeout_s):
                reply, reply_frames = await future
        except TimeoutError:
            raise Unavailable(
                f"the engine process did not answer within {self.timeout_s:g} s; retry later"
            ) from None
        finally:
            self._pending.pop(request_id, None)
        if "error" in reply:
            raise decode_error(reply["error"])
        return reply["result"], reply_frames

    async def _wait_connected(self) -> None:
        if self._connecting is None:
            raise Unavailable("the front end is not connected to the engine process")
        if not self._connected.is_set():
            try:
                wait = self.connect_wait_s if self._ever_connected else self.first_connect_wait_s
                async with asyncio.timeout(wait):
                    await self._connected.wait()
            except TimeoutError:
                raise Unavailable(NOT_ANSWERING) from None

    def _flush(self) -> None:
        """Send this turn's calls as one message; if no engine can take it, each of its
        callers learns so now."""
        outbox, self._outbox = self._outbox, []
        try:
            if self._channel is None:
                raise ConnectionError
            self._channel.send(codec.bundle([(header, tensors) for _, header, tensors in outbox]))
        except ConnectionError:
            for request_id, _, _ in outbox:
                future = self._pending.get(request_id)
                if future is not None and not future.done():
                    future.set_exception(Unavailable(NOT_ANSWERING))

    def _on_reply(self, frames: list[memoryview]) -> None:
        try:
            replies = codec.unbundle(frames)
        except Exception:
            log.exception("dropping a malformed reply from the engine process")
            return
        for reply, reply_frames in replies:
            future = self._pending.get(reply.get("id", 0))
            # A reply whose caller already gave up (timeout, disconnect) is dropped.
            if future is not None and not future.done():
                future.set_result((reply, reply_frames))

    def _fail_pending(self, message: str) -> None:
        """Each caller gets its own exception: one instance raised in many tasks would
        collect all their tracebacks."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable(message))


class EngineService:
    """The engine side: answers EngineClient calls by calling a real DataPlane.

    ``ops`` maps a control operation's name to a coroutine function taking its
    arguments by keyword; the engine process may add its own.
    """

    def __init__(
        self, dataplane: DataPlane, address: str, *, arena_bytes: int = ARENA_BYTES
    ) -> None:
        self.dataplane = dataplane
        self.address = address
        #: Shared memory offered to each front end for large frames (0: all in the socket).
        self.arena_bytes = arena_bytes
        self.ops: dict[str, Op] = {
            "addressed": self._addressed,
            "ready": self._ready,
            "live": self._live,
            "route": self._route,
        }
        self._socket: socket.socket | None = None
        #: This turn's replies by front end (its connection), sent when the turn ends.
        self._outbox: dict[Channel, list[tuple[bytes, list[Buffer]]]] = {}
        #: Stream slots each front end holds (by its connection), freed when it goes.
        self._streams: dict[Channel, dict[int, Callable[[], None]]] = {}
        self._stream_ids = itertools.count(1)
        #: The front ends' connections now.
        self.connections: set[Channel] = set()

    def bind(self) -> None:
        """Take the address now (listening: a client that connects from here on is
        answered once ``run`` runs); ``run`` binds by itself if this was not called."""
        if self._socket is not None:
            return
        path = unix_path(self.address)
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):  # a dead predecessor's socket file
                os.unlink(path)
            listening.bind(path)
            listening.listen(1024)
        except OSError:
            listening.close()
            raise
        self._socket = listening

    async def run(self) -> None:
        """Serve until cancelled; each call is its own task, cancelled with the service."""
        self.bind()
        assert self._socket is not None
        running: set[asyncio.Task[None]] = set()
        self.connections.clear()

        def connection() -> Channel:
            channel = Channel(
                lambda frames: on_request(channel, frames), arena_bytes=self.arena_bytes
            )
            self.connections.add(channel)
            channel.closed.add_done_callback(lambda _: gone(channel))
            return channel

        def gone(channel: Channel) -> None:
            self.connections.discard(channel)
            for release in self._streams.pop(channel, {}).values():
                release()

        def on_request(channel: Channel, frames: list[memoryview]) -> None:
            try:
                calls = codec.unbundle(frames)
            except Exception:
                log.warning("dropping a malformed message on the hop")
                return
            for call, tensors in calls:
                try:
                    request_id, op, args = call["id"], call["op"], call["args"]
                except KeyError:
                    log.warning("dropping a malformed call on the hop")
                    return
                task = asyncio.create_task(self._answer(channel, request_id, op, args, tensors))
                running.add(task)
                task.add_done_callback(running.discard)

        server = await asyncio.get_running_loop().create_unix_server(connection, sock=self._socket)
        try:
            await asyncio.Event().wait()
        finally:
            server.close()
            for channel in list(self.connections):
                channel.close()
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            self._socket = None

    async def _answer(
        self,
        channel: Channel,
        request_id: int,
        op: str,
        args: dict[str, Any],
        tensors: list[Buffer],
    ) -> None:
        reply_frames: list[Buffer] = []
        try:
            result, reply_frames = await self._dispatch(channel, op, args, tensors)
            body = codec.pack({"id": request_id, "result": result, "frames": len(reply_frames)})
        except AiaasError as error:
            error_record = encode_error(error)
            body = codec.pack({"id": request_id, "error": error_record, "frames": 0})
            reply_frames = []
        except Exception:
            log.exception("unexpected error answering %r over the hop", op)
            internal = encode_error(InternalError("internal server error"))
            body = codec.pack({"id": request_id, "error": internal, "frames": 0})
            reply_frames = []
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.setdefault(channel, []).append((body, reply_frames))

    def _flush(self) -> None:
        """Send this turn's replies, one message to each front end that has some; a reply
        to a front end that is gone is dropped."""
        outbox, self._outbox = self._outbox, {}
        for channel, replies in outbox.items():
            with contextlib.suppress(ConnectionError):
                channel.send(codec.bundle(replies))

    async def _dispatch(
        self, channel: Channel, op: str, args: dict[str, Any], frames: list[Buffer]
    ) -> Reply:
        if op == "open_stream":  # the slots a front end holds are tied to its connection
            release = await self.dataplane.acquire_stream(args["client"])
            token = next(self._stream_ids)
            self._streams.setdefault(channel, {})[token] = release
            return token, []
        if op == "close_stream":
            freed = self._streams.get(channel, {}).pop(args["token"], None)
            if freed is not None:
                freed()
            return None, []
        if op == "infer":
            name, version, request = codec.decode_request(args, frames)
            response = await self.dataplane.infer(name, version, request)
            return codec.encode_response(response)
        handler = self.ops.get(op)
        if handler is None:
            raise InvalidArgument(f"the engine process has no operation {op!r}")
        return await handler(**args), []

    async def _addressed(self, name: str, version: str | None) -> None:
        self.dataplane.check_addressed(name, version)

    async def _ready(self) -> bool:
        return self.dataplane.ready()

    async def _live(self) -> bool:
        return self.dataplane.live()

    async def _route(self, name: str) -> str | None:
        """Where a model's infer calls go when not here (see ``workers.model_hosts``)."""
        return None
