"""Triton's system shared memory extension: clients on the same host register POSIX
shared-memory regions (``shm_open`` keys, as ``tritonclient.utils.shared_memory``
creates them) and pass tensors through them instead of the request body.

A region is mapped once, at registration. Every use checks the client's bounds
against the region and that the key still names the same object (a client that
destroyed its region and made a new one under the key must register again), so
a misuse is a clear client error, never a read or write outside the mapping.
"""

from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiaas.errors import AlreadyExists, InvalidArgument, NotFound

#: Where Linux keeps POSIX shared-memory objects: shm_open("/k") is /dev/shm/k.
SHM_ROOT = Path("/dev/shm")
REGION = "shared_memory_region"
OFFSET = "shared_memory_offset"
BYTE_SIZE = "shared_memory_byte_size"


@dataclass(slots=True)
class _Region:
    name: str
    key: str
    offset: int
    byte_size: int
    inode: tuple[int, int]
    mapping: mmap.mmap

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset,
                "byte_size": self.byte_size}  # fmt: skip


class SystemSharedMemory:
    """The registered regions of one server; safe to call from any thread."""

    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}
        self._lock = threading.Lock()

    def register(self, name: str, key: object, offset: object, byte_size: object) -> None:
        """Map a client's region; the values come straight from the request, checked here."""
        offset = _checked_int(offset, "offset", minimum=0)
        byte_size = _checked_int(byte_size, "byte_size", minimum=1)
        path = _key_path(key)
        with self._lock:
            if name in self._regions:
                raise AlreadyExists(f"shared memory region '{name}' is already registered")
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError as error:
                raise InvalidArgument(
                    f"unable to open shared memory region '{name}' (key '{key}'): {error.strerror}"
                ) from None
            try:
                info = os.fstat(fd)
                if offset + byte_size > info.st_size:
                    raise InvalidArgument(
                        f"shared memory region '{name}': offset {offset} + byte_size "
                        f"{byte_size} is past the end of key '{key}' ({info.st_size} bytes)"
                    )
                mapping = mmap.mmap(fd, offset + byte_size)
            finally:
                os.close(fd)
            inode = (info.st_dev, info.st_ino)
            self._regions[name] = _Region(name, str(key), offset, byte_size, inode, mapping)

    def unregister(self, name: str | None = None) -> None:
        """One region, or all of them when ``name`` is None (as Triton's unregister-all).

        An unknown name succeeds, as in Triton: clients unregister to clean up before they
        register, and a region that is already gone is what they asked for.
        """
        with self._lock:
            chosen = list(self._regions) if name is None else [name]
            for each in chosen:
                if each not in self._regions:
                    continue
                self._regions.pop(each).mapping.close()

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if name is None:
                return [region.status() for region in self._regions.values()]
            region = self._regions.get(name)
            if region is None:
                raise NotFound(f"shared memory region '{name}' is not registered")
            return [region.status()]

    def read(self, parameters: dict[str, Any], where: str) -> bytes:
        """The bytes an input's shared_memory_* parameters point at (a copy)."""
        with self._lock:
            region, start, size = self._locate(parameters, where)
            return region.mapping[start : start + size]

    def write(self, parameters: dict[str, Any], data: bytes, where: str) -> None:
        """Put an output into the region its shared_memory_* parameters name."""
        with self._lock:
            region, start, size = self._locate(parameters, where)
            if len(data) > size:
                raise InvalidArgument(
                    f"{where}: the result is {len(data)} bytes but shared_memory_byte_size "
                    f"is {size}"
                )
            region.mapping[start : start + len(data)] = data

    def close(self) -> None:
        self.unregister(None)

    def _locate(self, parameters: dict[str, Any], where: str) -> tuple[_Region, int, int]:
        name = parameters.get(REGION)
        if not isinstance(name, str):
            raise InvalidArgument(f"{where}: '{REGION}' must be a string")
        region = self._regions.get(name)
        if region is None:
            raise InvalidArgument(f"{where}: shared memory region '{name}' is not registered")
        offset = _checked_int(parameters.get(OFFSET, 0), f"{where}: {OFFSET}", minimum=0)
        size = _checked_int(parameters.get(BYTE_SIZE), f"{where}: {BYTE_SIZE}", minimum=0)
        if offset + size > region.byte_size:
            raise InvalidArgument(
                f"{where}: offset {offset} + byte size {size} is outside shared memory region "
                f"'{name}' ({region.byte_size} bytes)"
            )
        _check_still_there(region, where)
        return region, region.offset + offset, size


def is_shared(parameters: dict[str, Any]) -> bool:
    return REGION in parameters


def _key_path(key: object) -> Path:
    if not isinstance(key, str) or not key.startswith("/") or "/" in key[1:] or len(key) < 2:
        raise InvalidArgument(f"shared memory key {key!r} must look like '/name' (shm_open)")
    return SHM_ROOT / key[1:]


def _check_still_there(region: _Region, where: str) -> None:
    try:
        info = os.stat(SHM_ROOT / region.key[1:])
    except OSError:
        info = None
    if info is None or (info.st_dev, info.st_ino) != region.inode:
        raise InvalidArgument(
            f"{where}: shared memory region '{region.name}' (key '{region.key}') no longer "
            "exists; the client must create and register it again"
        )


def _checked_int(value: object, what: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value
