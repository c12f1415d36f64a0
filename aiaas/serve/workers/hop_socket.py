"""Messages of frames over a Unix stream socket, read and written by the event loop.

A message is a prefix (its length, its frame count, its kind), a place for each frame
(its length, and where it lies: in the message, or in the sender's shared-memory arena),
then the frames that travel in the message. The loop's transport writes them with one
vectored write, straight from the calling thread, and hands what it reads to
``data_received``, which cuts it into messages without copying when a read holds whole
ones. Frames of 64 KiB and more go through the arena when both ends could set one up
(``hop_arena``): copied once by the sender, read in place by the receiver.

ZeroMQ carried the hop before: each of its sends wakes the library's I/O thread, and
each receive is that thread's wake-up of the loop, so a round trip took four thread
hand-offs more than a socket does; measured between two processes here, ~60-150 us a
round trip against ~20-27 us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import cast

from aiaas.serve.workers.hop_arena import THRESHOLD_BYTES, Arena, PeerArena

log = logging.getLogger(__name__)

#: A frame as either side holds it: bytes, or a flat memoryview of bytes.
Buffer = bytes | bytearray | memoryview
OnMessage = Callable[[list[memoryview]], None]

#: Length of the rest of the message, its number of frames, its kind.
_PREFIX = struct.Struct("<QII")
#: Each frame's length and place: 0 when it follows in the message, else 1 + its offset
#: in the sender's arena.
_PLACE = struct.Struct("<QQ")
#: A message with more frames than this is not one of ours: the peer is broken.
_MAX_FRAMES = 1 << 20
#: The sender's arena: its process, its memfd there, its size.
_HELLO = struct.Struct("<iiQ")


class Kind(IntEnum):
    DATA = 0
    #: "Map my arena" (one frame, _HELLO); answered by ATTACHED when the peer could.
    HELLO = 1
    #: "I mapped your arena: put frames there."
    ATTACHED = 2
    #: "I am done with these slots of your arena" (one frame of little-endian u64s).
    FREE = 3


def unix_path(address: str) -> str:
    """The socket's path in an ``ipc://PATH`` address (the form ZeroMQ spelled it in,
    kept so that addresses read the same in logs and tests)."""
    return address.removeprefix("ipc://")


def framed(
    frames: Sequence[Buffer], kind: Kind = Kind.DATA, places: Sequence[int] | None = None
) -> list[Buffer]:
    """A message's buffers as they go on the wire: a header, then the frames that travel
    in it (those whose place is 0; ``places`` None: all of them)."""
    places = places or [0] * len(frames)
    header, inline, size = bytearray(), [], _PLACE.size * len(frames)
    for frame, place in zip(frames, places, strict=True):
        length = memoryview(frame).nbytes
        header += _PLACE.pack(length, place)
        if not place:
            inline.append(frame)
            size += length
    return [_PREFIX.pack(size, len(frames), kind) + header, *inline]


class Channel(asyncio.Protocol):
    """One connection's end: ``send`` a message; each one received goes to ``on_message``
    (frames as memoryviews over the received bytes, or over the sender's arena);
    ``closed`` is done when the connection is gone, whichever side ended it. With
    ``arena_bytes`` it offers the peer an arena of that size for its large frames."""

    def __init__(self, on_message: OnMessage, *, arena_bytes: int = 0) -> None:
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        #: The start of a message whose end has not arrived yet.
        self._partial = bytearray()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._arena_bytes = arena_bytes
        #: Ours, offered to the peer; frames go there once it says it mapped it (ready).
        self._arena: Arena | None = None
        self._arena_ready = False
        #: The peer's, mapped, once it offered one.
        self._peer: PeerArena | None = None
        #: Slots of the peer's arena we are done with, to tell it at the next loop turn.
        self._to_free: list[int] = []
        self._free_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self._arena_bytes > 0:
            self._arena = Arena.create(self._arena_bytes)
            if self._arena is not None:
                hello = _HELLO.pack(os.getpid(), self._arena.fd, self._arena.size)
                self._send_control(Kind.HELLO, [hello])

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._arena_ready = False
        if self._arena is not None:
            self._arena.close()
            self._arena = None
        if self._peer is not None:
            self._peer.close()
            self._peer = None
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def arena(self) -> Arena | None:
        """Our arena once the peer uses it (None: every frame goes in the socket)."""
        return self._arena if self._arena_ready else None

    def send(self, frames: Sequence[Buffer]) -> None:
        """Queue one message; raises ConnectionError once the connection is gone. The
        transport may keep the buffers until they are written: do not change them."""
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("the hop's connection is closed")
        places = None
        if self._arena_ready and self._arena is not None:
            places = [self._place(self._arena, frame) for frame in frames]
        self._transport.writelines(framed(frames, Kind.DATA, places))

    @staticmethod
    def _place(arena: Arena, frame: Buffer) -> int:
        view = memoryview(frame)
        if view.nbytes < THRESHOLD_BYTES:
            return 0
        offset = arena.put(view)
        return 0 if offset is None else offset + 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._partial:
            self._partial += data
            buffer: bytes | bytearray = self._partial
        else:
            buffer = data
        view = memoryview(buffer)
        start, end = 0, len(buffer)
        try:
            while end - start >= _PREFIX.size:
                size, count, kind = _PREFIX.unpack_from(buffer, start)
                if count > _MAX_FRAMES or size < _PLACE.size * count:
                    raise ValueError(f"a message of {count} frames in {size} bytes")
                body = start + _PREFIX.size
                if end - body < size:
                    break
                frames = self._frames(buffer, view, body, count, body + size)
                start = body + size
                self._received(Kind(kind), frames)
        except ValueError as error:  # our own peer sent it: a bug, not a client's fault
            log.error("closing the hop's connection on a malformed message: %s", error)
            self._partial = bytearray()
            self.close()
            return
        if start == 0 and buffer is self._partial:
            view.release()  # still accumulating: nothing of it was handed out
        else:
            # What was handed out keeps its memory; the rest starts a new buffer.
            self._partial = bytearray(view[start:])

    def _frames(
        self, buffer: bytes | bytearray, view: memoryview, body: int, count: int, end: int
    ) -> list[memoryview]:
        frames = []
        at = body + _PLACE.size * count
        for index in range(count):
            length, place = _PLACE.unpack_from(buffer, body + _PLACE.size * index)
            if place:
                if self._peer is None:
                    raise ValueError("a frame in an arena that was never offered")
                frames.append(self._peer.frame(place - 1, length))
            else:
                frames.append(view[at : at + length])
                at += length
        if at != end:
            raise ValueError("frame lengths that do not add up to the message")
        return frames

    def _received(self, kind: Kind, frames: list[memoryview]) -> None:
        if kind == Kind.DATA:
            self._on_message(frames)
        elif kind == Kind.HELLO:
            if len(frames) != 1 or frames[0].nbytes != _HELLO.size:
                raise ValueError("an arena's offer that is not one")
            pid, fd, size = _HELLO.unpack(frames[0])
            try:
                self._peer = PeerArena(pid, fd, size, self._freed)
            except OSError as error:
                log.info("the hop keeps its frames in the socket: cannot map the peer: %s", error)
                return
            self._send_control(Kind.ATTACHED, [])
        elif kind == Kind.ATTACHED:
            self._arena_ready = self._arena is not None
        elif kind == Kind.FREE:
            if len(frames) != 1 or frames[0].nbytes % 8:
                raise ValueError("a list of slots to free that is not one")
            if self._arena is not None:
                for (offset,) in struct.iter_unpack("<Q", frames[0]):
                    self._arena.give_back(offset)

    def _send_control(self, kind: Kind, frames: list[Buffer]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.writelines(framed(frames, kind))

    def _freed(self, offset: int) -> None:
        """A frame of the peer's arena is no longer referred to (any thread may call
        this, whichever dropped the last reference): tell the peer at the loop's next turn."""
        self._to_free.append(offset)
        if self._free_scheduled:
            return
        self._free_scheduled = True
        try:
            if threading.get_ident() == self._loop_thread:
                self._loop.call_soon(self._send_frees)
            else:
                self._loop.call_soon_threadsafe(self._send_frees)
        except RuntimeError:  # the loop is closed: so is the connection
            pass

    def _send_frees(self) -> None:
        self._free_scheduled = False  # before taking the list: a later free schedules anew
        offsets, self._to_free = self._to_free, []
        if offsets:
            self._send_control(Kind.FREE, [struct.pack(f"<{len(offsets)}Q", *offsets)])
