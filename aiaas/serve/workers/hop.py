"""The hop between front-end processes and the engine process: ZeroMQ over ipc://.

A front end's ``EngineClient`` (DEALER) sends a call as a msgpack header and one frame
per tensor; the engine's ``EngineService`` (ROUTER) answers each in its own task, so a
slow model never holds up another call, and the reply is matched to its caller by id.
Tensor frames are sent without a copy and read back as arrays over the received memory;
nothing is pickled.

Each side sends the calls (or replies) of one event-loop turn as one multipart message:
their headers packed one after another into its first frame, then every call's tensor
frames in order. A ZeroMQ send wakes the library's I/O thread, and under load that
wake-up per message was a third of the engine loop's busy time; one send per turn per
peer pays it once for all the calls the turn made.

An engine that dies must never leave a client hanging: a socket monitor sees the
disconnect at once and fails every call in flight with ``Unavailable``; calls made
while no engine is connected fail after a short wait instead of queuing for a dead
peer, and ZeroMQ reconnects by itself when an engine binds the address again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from aiaas.errors import AiaasError, InternalError, InvalidArgument, Unavailable
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.types import InferRequest, InferResponse
from aiaas.serve.workers import hop_codec as codec
from aiaas.serve.workers.hop_codec import Buffer
from aiaas.serve.workers.hop_socket import LoopSocket

log = logging.getLogger(__name__)

NOT_ANSWERING = "the engine process is not answering (it may be restarting); retry later"
#: A connection is usable once its ZMTP handshake is done, not when the socket connects.
_READY_EVENT: int = getattr(zmq, "EVENT_HANDSHAKE_SUCCEEDED", zmq.EVENT_CONNECTED)
_WATCHED = _READY_EVENT | zmq.EVENT_DISCONNECTED
#: How often the DEALER retries a missing engine, and at most how long it waits between tries.
_RECONNECT_MS, _RECONNECT_MAX_MS = 50, 500

#: A reply's header (or an operation's result) and its tensor frames.
Reply = tuple[Any, list[Buffer]]
Op = Callable[..., Awaitable[Any]]


def _tune(socket: zmq.Socket[Any]) -> None:
    """No high-water marks (callers are bounded by the front ends' own limits, and a full
    queue must never silently block a send) and no lingering of unsent messages at close."""
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.setsockopt(zmq.RCVHWM, 0)


class EngineClient:
    """One per front-end process, on its event loop, shared by every coroutine.

    ZeroMQ DEALER to the engine's ROUTER; requests carry an id, replies are matched to
    futures. The engine's errors come back as the same class with the same message.
    """

    def __init__(
        self, address: str, *, timeout_s: float = 60.0, connect_wait_s: float = 1.0
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        #: How long a new call waits for an engine to be connected before it is refused.
        self.connect_wait_s = connect_wait_s
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._channel: LoopSocket | None = None
        self._monitor: LoopSocket | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._connected = asyncio.Event()
        #: This turn's calls, sent together when the turn ends: (id, header, frames).
        self._outbox: list[tuple[int, bytes, list[Buffer]]] = []

    @property
    def connected(self) -> bool:
        """Whether an engine is connected now (it may still die before it answers)."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect; needs the running loop, which watches the sockets."""
        if self._channel is not None:
            return
        self._context = zmq.Context()
        socket = self._context.socket(zmq.DEALER)
        _tune(socket)
        # Queue messages only to a connected engine: never to a dead one that comes back.
        socket.setsockopt(zmq.IMMEDIATE, 1)
        socket.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_MS)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_MAX_MS)
        monitor = socket.get_monitor_socket(_WATCHED)
        socket.connect(self.address)
        self._channel = LoopSocket(socket, self._on_reply)
        self._monitor = LoopSocket(monitor, self._on_event)

    async def close(self) -> None:
        """Stop; calls still in flight fail with Unavailable."""
        self._fail_pending("the front end is shutting down")
        self._connected.clear()
        if self._channel is not None:
            self._channel.socket.disable_monitor()
            self._channel.close()
            self._channel = None
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        args, frames = codec.encode_request(name, version, request)
        body, reply_frames = await self._round_trip("infer", args, frames)
        return codec.decode_response(body, reply_frames)

    async def call(self, op: str, **args: Any) -> Any:
        """A small control operation of the engine's (msgpack-able arguments and result)."""
        body, _ = await self._round_trip(op, args, [])
        return body

    async def _round_trip(self, op: str, args: dict[str, Any], frames: list[Buffer]) -> Reply:
        await self._connected_channel()
        request_id = next(self._ids)
        header = codec.pack([request_id, op, args, len(frames)])
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
            raise codec.decode_error(reply["error"])
        return reply["result"], reply_frames

    async def _connected_channel(self) -> LoopSocket:
        if self._channel is None:
            raise Unavailable("the front end is not connected to the engine process")
        if not self._connected.is_set():
            try:
                async with asyncio.timeout(self.connect_wait_s):
                    await self._connected.wait()
            except TimeoutError:
                raise Unavailable(NOT_ANSWERING) from None
        return self._channel

    def _flush(self) -> None:
        """Send this turn's calls as one message; if no engine can take it, each of its
        callers learns so now."""
        outbox, self._outbox = self._outbox, []
        frames: list[Buffer] = [b"".join(header for _, header, _ in outbox)]
        for _, _, tensors in outbox:
            frames += tensors
        try:
            if self._channel is None:
                raise zmq.Again
            self._channel.send(frames)
        except zmq.Again:
            for request_id, _, _ in outbox:
                future = self._pending.get(request_id)
                if future is not None and not future.done():
                    future.set_exception(Unavailable(NOT_ANSWERING))

    def _on_reply(self, frames: list[zmq.Frame]) -> None:
        try:
            replies = codec.unpack_all(frames[0].buffer)
        except Exception:
            log.exception("dropping a malformed reply from the engine process")
            return
        index = 1
        for reply in replies:
            count = reply["frames"]
            future = self._pending.get(reply["id"])
            # A reply whose caller already gave up (timeout, disconnect) is dropped.
            if future is not None and not future.done():
                future.set_result((reply, [f.buffer for f in frames[index : index + count]]))
            index += count

    def _on_event(self, frames: list[zmq.Frame]) -> None:
        event = parse_monitor_message([frame.bytes for frame in frames])["event"]
        if event == _READY_EVENT:
            self._connected.set()
        elif event == zmq.EVENT_DISCONNECTED:
            self._connected.clear()
            self._fail_pending(NOT_ANSWERING)

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

    def __init__(self, dataplane: DataPlane, address: str) -> None:
        self.dataplane = dataplane
        self.address = address
        self.ops: dict[str, Op] = {
            "addressed": self._addressed,
            "ready": self._ready,
            "live": self._live,
        }
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._socket: zmq.Socket[bytes] | None = None
        #: This turn's replies by front end (its ZeroMQ routing id), sent when the turn ends.
        self._outbox: dict[bytes, list[tuple[bytes, list[Buffer]]]] = {}

    def bind(self) -> None:
        """Take the address now, so that the caller knows clients can reach it once this
        returns; ``run`` binds by itself if this was not called."""
        if self._socket is not None:
            return
        self._context = zmq.Context()
        socket = self._context.socket(zmq.ROUTER)
        _tune(socket)
        try:
            socket.bind(self.address)
        except zmq.ZMQError:
            self._context.destroy(linger=0)
            self._context = None
            raise
        self._socket = socket

    async def run(self) -> None:
        """Serve until cancelled; each request is its own task, cancelled with the service."""
        self.bind()
        assert self._socket is not None
        running: set[asyncio.Task[None]] = set()

        def on_request(frames: list[zmq.Frame]) -> None:
            peer = frames[0].bytes
            try:
                calls = codec.unpack_all(frames[1].buffer)
            except Exception:
                log.warning("dropping a malformed message on the hop")
                return
            index = 2
            for call in calls:
                try:
                    request_id, op, args, count = call
                except (TypeError, ValueError):
                    log.warning("dropping a malformed call on the hop")
                    return
                tensors = [f.buffer for f in frames[index : index + count]]
                index += count
                answer = self._answer(channel, peer, request_id, op, args, tensors)
                task = asyncio.create_task(answer)
                running.add(task)
                task.add_done_callback(running.discard)

        channel = LoopSocket(self._socket, on_request)
        try:
            await asyncio.Event().wait()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            channel.close()
            self._socket = None
            if self._context is not None:
                self._context.destroy(linger=0)
                self._context = None

    async def _answer(
        self,
        channel: LoopSocket,
        peer: bytes,
        request_id: int,
        op: str,
        args: dict[str, Any],
        tensors: list[Buffer],
    ) -> None:
        reply_frames: list[Buffer] = []
        try:
            result, reply_frames = await self._dispatch(op, args, tensors)
            body = codec.pack({"id": request_id, "result": result, "frames": len(reply_frames)})
        except AiaasError as error:
            error_record = codec.encode_error(error)
            body = codec.pack({"id": request_id, "error": error_record, "frames": 0})
            reply_frames = []
        except Exception:
            log.exception("unexpected error answering %r over the hop", op)
            internal = codec.encode_error(InternalError("internal server error"))
            body = codec.pack({"id": request_id, "error": internal, "frames": 0})
            reply_frames = []
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush, channel)
        self._outbox.setdefault(peer, []).append((body, reply_frames))

    def _flush(self, channel: LoopSocket) -> None:
        """Send this turn's replies, one message to each front end that has some. A ROUTER
        drops a message to a front end that is gone; it never blocks."""
        outbox, self._outbox = self._outbox, {}
        for peer, replies in outbox.items():
            frames: list[Buffer] = [peer, b"".join(body for body, _ in replies)]
            for _, tensors in replies:
                frames += tensors
            with contextlib.suppress(zmq.ZMQError):  # the socket closed meanwhile
                channel.send(frames)

    async def _dispatch(self, op: str, args: dict[str, Any], frames: list[Buffer]) -> Reply:
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
