"""Where a repository's models are built and run. In one process: here, with their
sessions built off the event loop. The engine process of `aiaas serve --workers N`
runs each model in a process of its own instead (``workers.model_hosts``), and the
repository keeps only a mirror of each version there.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiaas.serve import loading
from aiaas.serve.loading import Prepared
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.serve.sources import ModelFolder
from aiaas.serve.types import InferRequest, InferResponse


class Hosted(Protocol):
    """A version another process serves, as its batcher here (see ``workers.model_hosts``)."""

    queue_depth: int

    async def infer(
        self, name: str, version: str | None, request: InferRequest
    ) -> InferResponse: ...

    async def close(self) -> None: ...


class Hosting:
    """Where a repository's models are built and run: in this process, by default. The
    engine process of `--workers` runs each model in a process of its own instead
    (``workers.model_hosts``); the hooks below are what that needs to hear."""

    #: How many models the initial load builds at once: here one after another, as
    #: sessions built side by side in one process only compete for its cores and memory.
    parallel_loads = 1

    async def prepare(
        self,
        folder: ModelFolder,
        override: pb.ModelConfig | None,
        loaded: dict[int, str],
        max_model_bytes: int | None,
    ) -> list[Prepared]:
        """Build the model's chosen versions that changed (``loaded``: fingerprints of
        what serves now); raises what stops the load."""
        return await asyncio.to_thread(
            loading.prepare_model, folder, override, loaded, max_model_bytes
        )

    async def unload(self, name: str) -> None:
        """The model no longer serves."""

    async def refresh(self) -> None:
        """Statistics are about to be read."""

    async def registered(self, region: dict[str, Any]) -> None:
        """A shared-memory region was registered (its status)."""

    async def unregistered(self, name: str | None) -> None:
        """A shared-memory region (None: every one) was unregistered."""

    async def close(self) -> None:
        """The server stops; every model has been unloaded."""
