"""The hop's framing on a real Unix socket: a message arrives whole and unchanged however
the stream cuts it (a byte at a time, several messages in one read, frames of megabytes),
and a stream that breaks the framing closes the connection instead of being guessed at."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import tempfile

import pytest

from aiaas.serve.workers.hop_socket import Channel, framed


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
        struct.pack("<QI", 8, 5),  # five frames cannot fit in 8 bytes of lengths
        struct.pack("<QI", 16, 1) + struct.pack("<Q", 3) + b"12345678",  # lengths disagree
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
