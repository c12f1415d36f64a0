"""What a front-end process's REST and gRPC front ends call instead of a DataPlane.

The front ends' infer paths use a few attributes of the data plane (limits, stream
slots, the address checks, infer); this answers them the same way over the hop, so
the front ends stay exactly as they are in one process. Everything the infer paths do
not use (metadata, load, shared-memory registration...) is passed through to the
engine's own HTTP and gRPC listeners, not answered here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiaas.errors import AiaasError
from aiaas.serve.limits import RequestLimits, check_model_name, once
from aiaas.serve.types import InferRequest, InferResponse
from aiaas.serve.workers.hop import EngineClient


class RemoteDataPlane:
    """The data plane of a front-end process, answered by the engine process."""

    def __init__(self, client: EngineClient, limits: RequestLimits) -> None:
        self.client = client
        self.limits = limits
        self.started = False
        #: Releases on their way to the engine (a task is kept until it is done).
        self._releasing: set[asyncio.Task[Any]] = set()

    def check_addressed(self, name: str, version: str | None) -> None:
        """Only the name rules here: whether a model answers is the engine's to say, and
        asking it before every request would cost a second hop. An unknown model is still
        404 / NOT_FOUND, from ``infer`` or, when the body is bad, ``confirm_addressed``."""
        check_model_name(name)

    async def confirm_addressed(self, name: str, version: str | None) -> None:
        """Raise NotFound when no loaded model answers this address (asks the engine)."""
        await self.client.call("addressed", name=name, version=version)

    async def acquire_stream(self, client: str | None) -> Callable[[], None]:
        """A slot of the engine's, which counts the streams of every front end: a client
        whose connections land on several front ends holds no more than the limit. The
        slot is freed when the stream ends, or by the engine when this process goes."""
        token = await self.client.call("open_stream", client=client)

        def release() -> None:
            task = asyncio.get_running_loop().create_task(self._release(token))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

        return once(release)

    async def _release(self, token: int) -> None:
        # An engine that is gone has freed the slot with the connection; nothing to tell.
        with contextlib.suppress(AiaasError):
            await self.client.call("close_stream", token=token)

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        return await self.client.infer(name, version, request)
