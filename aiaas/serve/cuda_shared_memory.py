"""Triton's CUDA shared memory extension as a server with no GPUs answers it.

aiaas runs models on CPUs only, so no client can hand it a CUDA buffer. The calls
are still answered, because Triton's own clients make them as a clean-up before
they start (``unregister_cuda_shared_memory()`` in ``simple_http_shm_client.py``
and ``simple_grpc_shm_client.py``), even when they then use system shared memory:
status lists no regions, unregister has nothing to release and succeeds (as
Triton's does for a name it does not hold), register is refused with the reason.
"""

from __future__ import annotations

from typing import Any

from aiaas.errors import InvalidArgument, NotFound


class NoCudaSharedMemory:
    """The CUDA shared memory registry of a server without GPUs: always empty."""

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every registered region (none); a named one is unknown, in Triton's words."""
        if name is None:
            return []
        raise NotFound(f"Unable to find cuda shared memory region: '{name}'")

    def register(self, name: str) -> None:
        raise InvalidArgument(
            f"failed to register CUDA shared memory region: '{name}', GPUs not supported: "
            "this server has no GPUs, so CUDA shared memory is unavailable; "
            "use system shared memory (/v2/systemsharedmemory) instead"
        )

    def unregister(self, name: str | None = None) -> None:
        """One region, or all when ``name`` is None: there are none, so nothing to do."""
