"""A disk that fills, for a subprocess: RLIMIT_FSIZE makes any write past the size fail.

The kernel sends SIGXFSZ first, whose default action kills the process; ignored (as
Python does anyway), the write fails with EFBIG, as it would with ENOSPC on a full disk.
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable


def file_size_limit(limit_bytes: int) -> Callable[[], None]:
    """A preexec_fn: no file of the child may grow past `limit_bytes`."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply
