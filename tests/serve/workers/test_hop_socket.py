"""The hop's framing on a real Unix socket: a message arrives whole and unchanged however
the stream cuts it (a byte at a time, several messages in one read, frames of megabytes),
and a stream that breaks the framing closes the connection instead of being guessed at.
Large frames go through the sender's shared-memory arena when the peer mapped it, and
their slots come back once nothing refers to them."""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import socket
import struct
import tempfile
import threading
from collections.abc import AsyncIterator

import numpy as np
import pytest

from aiaas.serve.workers.hop_arena import Arena
from aiaas.serve.workers.hop_socket import Channel, Kind, framed


@pytest.fixture
def path() -> str:
    folder = tempfile.mkdtemp(prefix="hop-socket-")
    return os.path.join(folder, "s")


async def receiving(path: str) -> tuple[asyncio.Server, list[list[bytes]], list[Channel]]:
    """A server whose channels record every message as the bytes of its frames."""
    received: list[list[bytes]] = []
    channels: list[Channel] = []

    def connection() -> Channel:
        channel = Channel(lambda frames: received.append([bytes(f) for f in frames]))
        channels.append(channel)
        return channel

    server = await asyncio.get_running_loop().create_unix_server(connection, path)
    return server, received, channels


async def raw_client(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.setblocking(False)
    return sock


async def until(condition, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


MESSAGES = [
    [b"header", b"", b"\x00" * 3],
    [b""],
    [b"x" * 70_000, bytes(range(256)) * 8],
    [b"last"],
]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20], ids=lambda c: f"chunk{c}")
def test_messages_arrive_whole_however_the_stream_is_cut(path, chunk):
    async def scenario() -> None:
        server, received, _ = await receiving(path)
        loop = asyncio.get_running_loop()
        sock = await raw_client(path)
        wire = b"".join(bytes(part) for message in MESSAGES for part in framed(message))
        for start in range(0, len(wire), chunk):
            await loop.sock_sendall(sock, wire[start : start + chunk])
        await until(lambda: len(received) == len(MESSAGES), "every message received")
        assert received == MESSAGES
        sock.close()
        server.close()

    asyncio.run(scenario())


def test_a_channel_sends_what_the_other_end_receives_including_large_frames(path):
    async def scenario() -> None:
        server, received, _ = await receiving(path)
        replies: list[list[bytes]] = []
        _, channel = await asyncio.get_running_loop().create_unix_connection(
            lambda: Channel(lambda frames: replies.append([bytes(f) for f in frames])), path
        )
        big = memoryview(bytes(range(251)) * 20_000)  # ~5 MB, more than one read
        channel.send([b"h", big])
        channel.send([b"second"])
        await until(lambda: len(received) == 2, "both messages received")
        assert received == [[b"h", bytes(big)], [b"second"]]
        channel.close()
        await asyncio.wait_for(channel.closed, 5)
        with pytest.raises(ConnectionError):
            channel.send([b"after close"])
        server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack("<QII", 16, 5, 0),  # five frames cannot fit in 16 bytes of places
        struct.pack("<QII", 24, 1, 0) + struct.pack("<QQ", 3, 0) + b"12345678",  # lengths disagree
    ],
    ids=["too-many-frames", "lengths-disagree"],
)
def test_a_stream_that_breaks_the_framing_closes_the_connection(path, garbage):
    async def scenario() -> None:
        server, received, channels = await receiving(path)
        sock = await raw_client(path)
        await asyncio.get_running_loop().sock_sendall(sock, garbage)
        await until(lambda: channels and channels[0].closed.done(), "the connection closed")
        assert received == []
        sock.close()
        server.close()

    asyncio.run(scenario())


# ---- large frames through shared memory ---------------------------------------------

ARENA = 1 << 20


def test_the_arena_hands_out_slots_and_merges_them_back():
    arena = Arena.create(ARENA)
    assert arena is not None
    try:
        page = mmap.PAGESIZE
        first = arena.put(memoryview(b"a" * (3 * page)))
        second = arena.put(memoryview(b"b" * (page + 1)))  # two pages
        third = arena.put(memoryview(b"c" * page))
        assert (first, second, third) == (0, 3 * page, 5 * page)
        assert arena.put(memoryview(bytes(ARENA))) is None  # no room: the caller keeps it
        arena.give_back(second)
        assert arena.put(memoryview(b"d" * (3 * page))) == 6 * page  # the hole is too small
        assert arena.put(memoryview(b"f" * (2 * page))) == second  # this one fits it
        arena.give_back(second)
        arena.give_back(6 * page)
        arena.give_back(first)
        arena.give_back(third)
        arena.give_back(12345)  # not ours: ignored
        arena.give_back(first)  # twice: ignored
        assert arena.put(memoryview(b"e" * (6 * page))) == 0  # the three merged into one
    finally:
        arena.close()


@contextlib.asynccontextmanager
async def arena_pair(path: str, on_message) -> AsyncIterator[Channel]:
    """A client channel whose server end hands each message to ``on_message``; both
    offer an arena, and the client's is in use when this yields. Closed on the way out."""
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(lambda: Channel(on_message, arena_bytes=ARENA), path)
    _, client = await loop.create_unix_connection(
        lambda: Channel(lambda frames: None, arena_bytes=ARENA), path
    )
    try:
        await until(lambda: client.arena is not None, "the server mapped the client's arena")
        yield client
    finally:
        client.close()
        server.close()


def test_a_large_frame_is_read_in_place_and_its_slot_comes_back_when_dropped(path):
    async def scenario() -> None:
        kept: list[list[memoryview]] = []
        async with arena_pair(path, kept.append) as client:
            arena = client.arena
            big = bytes(range(256)) * 1024  # 256 KiB: over the threshold
            client.send([b"small", big])
            await until(lambda: kept, "the message arrived")
            small, frame = kept[0]
            assert (bytes(small), bytes(frame)) == (b"small", big)
            assert arena.free_bytes == ARENA - len(big)  # the receiver still holds it
            array = np.frombuffer(frame, dtype=np.uint8).reshape(256, 1024)[1:]  # a view
            del kept[:], small, frame
            await asyncio.sleep(0.05)
            assert arena.free_bytes == ARENA - len(big)  # the array still refers to it
            assert array[0, 1] == 1
            del array
            await until(lambda: arena.free_bytes == ARENA, "the slot given back")

    asyncio.run(scenario())


def test_a_frame_the_arena_has_no_room_for_goes_in_the_socket(path):
    async def scenario() -> None:
        kept: list[list[memoryview]] = []
        async with arena_pair(path, kept.append) as client:
            arena = client.arena
            frames = [bytes([i]) * (400 << 10) for i in range(4)]  # 1.6 MiB: over the arena
            client.send(frames)
            await until(lambda: kept, "the message arrived")
            assert [bytes(frame) for frame in kept[0]] == frames
            assert arena.free_bytes < 400 << 10  # two went through the arena, the rest not
            del kept[:]
            await until(lambda: arena.free_bytes == ARENA, "the slots given back")

    asyncio.run(scenario())


def test_a_frame_dropped_in_another_thread_is_given_back_too(path):
    async def scenario() -> None:
        kept: list[list[memoryview]] = []
        async with arena_pair(path, kept.append) as client:
            client.send([b"\x07" * (128 << 10)])
            await until(lambda: kept, "the message arrived")
            holder = [kept.pop()]
            thread = threading.Thread(target=holder.clear)
            thread.start()
            thread.join()
            await until(lambda: client.arena.free_bytes == ARENA, "the slot given back")

    asyncio.run(scenario())


def test_a_peer_that_cannot_be_mapped_gets_every_frame_in_the_socket(path):
    """An offer whose memory cannot be opened is declined (no ATTACHED comes back), and
    a frame that claims to lie in an arena never offered closes the connection."""

    async def scenario() -> None:
        server, received, channels = await receiving(path)
        loop = asyncio.get_running_loop()
        sock = await raw_client(path)
        hello = struct.pack("<iiQ", os.getpid(), 999_999, ARENA)  # no such descriptor
        for buffer in framed([hello], Kind.HELLO):
            await loop.sock_sendall(sock, bytes(buffer))
        await asyncio.sleep(0.1)
        assert channels
        assert not channels[0].closed.done()
        with pytest.raises(BlockingIOError):
            sock.recv(1)  # and no ATTACHED
        for buffer in framed([b"x" * 10, b"y" * 20], Kind.DATA, [0, 1]):
            await loop.sock_sendall(sock, bytes(buffer))
        await until(lambda: channels and channels[0].closed.done(), "the connection closed")
        assert received == []
        sock.close()
        server.close()

    asyncio.run(scenario())
