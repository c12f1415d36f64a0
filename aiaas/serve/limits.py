"""The bounds one request must stay within, checked where the request is first read so
that a hostile size is refused before memory is spent on it.

Pure checks over plain values, shared by REST and gRPC so both wires refuse the same
request with the same words (400 / INVALID_ARGUMENT, 413 / RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiaas.errors import InvalidArgument, PayloadTooLarge, TooManyRequests

#: Longest model name, in UTF-8 bytes: what a folder name may be on common filesystems.
MAX_MODEL_NAME_BYTES = 255


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Defaults match `ServerSettings`'; the server passes the configured ones."""

    max_tensor_elements: int = 16 * 1024 * 1024
    max_inputs: int = 64
    max_bytes_element: int = 16 * 1024 * 1024
    max_load_files: int = 64
    max_load_file_bytes: int = 64 * 1024 * 1024
    max_streams_per_client: int = 16

    def check_count(self, count: int, what: str) -> None:
        """Inputs (or requested outputs) in one request."""
        if count > self.max_inputs:
            raise InvalidArgument(f"{count} {what} exceed the limit of {self.max_inputs}")

    def check_shape(self, shape: Sequence[int], where: str) -> None:
        """Elements of one tensor, from its declared shape, before any data is decoded."""
        count = math.prod(shape)
        if count > self.max_tensor_elements:
            raise PayloadTooLarge(
                f"{where}: shape {list(shape)} has {count} elements, over the limit of "
                f"{self.max_tensor_elements}"
            )

    def check_bytes_elements(self, items: Iterable[object], where: str) -> None:
        """Each element of a BYTES tensor."""
        for item in items:
            if isinstance(item, bytes | str) and len(item) > self.max_bytes_element:
                raise PayloadTooLarge(
                    f"{where}: a BYTES element of {len(item)} bytes is over the limit of "
                    f"{self.max_bytes_element}"
                )

    def check_files(self, files: Mapping[str, bytes]) -> None:
        """``file:`` parameters of one load request: how many, and their total size."""
        if len(files) > self.max_load_files:
            raise PayloadTooLarge(
                f"{len(files)} files passed, over the limit of {self.max_load_files}"
            )
        total = sum(len(content) for content in files.values())
        if total > self.max_load_file_bytes:
            raise PayloadTooLarge(
                f"the passed files total {total} bytes, over the limit of "
                f"{self.max_load_file_bytes}"
            )


def check_model_name(name: str) -> str:
    """A model name a client sends (URL, load request): what one folder name can be, so it
    can never be read as a path: no separators, no `.`/`..`, no control characters."""
    if not name:
        raise InvalidArgument("the model name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_MODEL_NAME_BYTES:
        raise InvalidArgument(f"the model name is longer than {MAX_MODEL_NAME_BYTES} bytes")
    if name in (".", "..") or any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument(
            f"model name {name[:64]!r} may not be '.', '..' or hold '/', '\\' or control characters"
        )
    return name


def once(action: Callable[[], None]) -> Callable[[], None]:
    """``action``, run by the first call only: a stream's slot is released from whichever
    of its ends comes first (finished, failed, disconnected), and perhaps from several."""
    done = False

    def run_once() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run_once


class StreamSlots:
    """Open streams per client address (server-sent events, gRPC streams), so that one
    client cannot hold every generation slot; a slot is freed when its stream ends,
    whether the client finished, failed or disconnected."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._open: dict[str, int] = {}

    def acquire(self, client: str | None) -> Callable[[], None]:
        """Take a slot for ``client`` or raise 429 / RESOURCE_EXHAUSTED; returns the
        release, which is safe to call more than once."""
        key = client or "unknown"
        if self._open.get(key, 0) >= self.per_client:
            raise TooManyRequests(
                f"this client already has {self.per_client} open streams, the most allowed; "
                "close one or retry later"
            )
        self._open[key] = self._open.get(key, 0) + 1

        def release() -> None:
            left = self._open[key] - 1
            if left:
                self._open[key] = left
            else:
                del self._open[key]

        return once(release)

    def open_streams(self, client: str) -> int:
        return self._open.get(client, 0)
