"""Shared memory for the hop's large frames, one arena for each direction of a connection.

A 1.5 MiB tensor written into a Unix socket crosses the kernel twice (copied into socket
buffers, copied out of them) in chunks of the socket's buffer size, each chunk a wake-up
of both event loops: measured here, ~1.1-1.3 ms of CPU a 1.5 MiB reply more than in one
process. Through an arena the writer copies the frame once into memory both processes
map, the message carries only where it lies, and the reader uses it in place.

The writer owns its arena (an anonymous ``memfd``, so nothing is left behind when both
processes are gone, however they end) and allocates from it; the reader maps it by the
writer's ``/proc/PID/fd/N`` and hands out each frame as a memoryview whose last
reference, whenever and in whichever thread it goes, queues the frame's offset to be
given back. A frame that finds no room, or a peer that could not map the arena, travels
in the socket as before: the arena only ever saves copies, it is never needed.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import logging
import mmap
import os
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Each direction of a connection may keep this much in flight in its arena. Only the
#: pages written are ever backed by memory.
ARENA_BYTES = 64 << 20
#: Smaller frames go in the socket: there, copying is cheaper than a slot's bookkeeping.
THRESHOLD_BYTES = 64 << 10
#: Slots are whole pages, so that a frame's array is aligned and the pages reused whole.
_PAGE = mmap.PAGESIZE


class Arena:
    """The writer's side: a memfd of ``size`` bytes, mapped, with a first-fit allocator
    over it. ``None`` from ``create`` where the system has no memfd."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._map = mmap.mmap(fd, size)
        self._view = memoryview(self._map)
        #: Free extents, sorted by offset, neighbours always merged.
        self._free: list[tuple[int, int]] = [(0, size)]
        #: Allocated slots: offset -> size.
        self._used: dict[int, int] = {}

    @classmethod
    def create(cls, size: int = ARENA_BYTES) -> Arena | None:
        try:
            # Named for its writer, so that /proc/PID/maps tells whose arenas a process maps.
            fd = os.memfd_create(f"aiaas-hop-{os.getpid()}", os.MFD_CLOEXEC)
        except (AttributeError, OSError) as error:  # not Linux, or memfd refused
            log.debug("no shared memory for the hop: %s", error)
            return None
        try:
            os.ftruncate(fd, size)
            return cls(fd, size)
        except OSError as error:
            os.close(fd)
            log.debug("no shared memory for the hop: %s", error)
            return None

    @property
    def free_bytes(self) -> int:
        return sum(length for _, length in self._free)

    def put(self, frame: memoryview) -> int | None:
        """Copy the frame into a new slot; its offset, or None when no slot is free."""
        need = -(-frame.nbytes // _PAGE) * _PAGE
        for index, (start, length) in enumerate(self._free):
            if length >= need:
                if length == need:
                    del self._free[index]
                else:
                    self._free[index] = (start + need, length - need)
                self._used[start] = need
                self._view[start : start + frame.nbytes] = frame.cast("B")
                return start
        return None

    def give_back(self, offset: int) -> None:
        """The reader is done with the slot at ``offset``; an offset we did not hand out
        (a confused peer) is ignored."""
        length = self._used.pop(offset, None)
        if length is None:
            return
        index = bisect.bisect(self._free, (offset, length))
        end = offset + length
        if index < len(self._free) and self._free[index][0] == end:  # merge the next
            end += self._free.pop(index)[1]
        if index > 0 and sum(self._free[index - 1]) == offset:  # merge into the previous
            offset = self._free[index - 1][0]
            index -= 1
            del self._free[index]
        self._free.insert(index, (offset, end - offset))

    def close(self) -> None:
        """Unmap and close; a reader that still maps the memfd keeps it (the kernel frees
        it with the last mapping)."""
        self._view.release()
        self._map.close()
        os.close(self.fd)


class PeerArena:
    """The reader's side: the writer's arena mapped, giving out its frames in place."""

    def __init__(self, pid: int, fd: int, size: int, on_free: Callable[[int], None]) -> None:
        """Raises OSError when the writer's memfd cannot be opened or mapped (another
        user's process, a hardened /proc): the caller then keeps to the socket."""
        descriptor = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            if os.fstat(descriptor).st_size < size:
                raise OSError(f"the peer's arena is smaller than the {size} bytes it claims")
            self._map = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)  # the mapping keeps the memory
        self.size = size
        self._on_free = on_free

    def frame(self, offset: int, length: int) -> memoryview:
        """The frame at ``offset``, in place. Its slot is given back once nothing refers
        to it any more: not the view, nor any array or view made from it."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"a frame of {length} bytes at {offset} outside the arena")
        # A ctypes array is the exporter because it can be weakly referenced and numpy
        # does not collapse a view's base past it (it would past an ndarray's).
        owner = (ctypes.c_char * length).from_buffer(self._map, offset)
        weakref.finalize(owner, self._on_free, offset).atexit = False
        return memoryview(owner).cast("B")

    def close(self) -> None:
        """Drop the mapping once no frame of it is in use (frames keep it alive)."""
        with contextlib.suppress(BufferError):  # frames still out: they hold the map
            self._map.close()
