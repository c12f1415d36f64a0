"""What a front-end process's REST and gRPC front ends call instead of a DataPlane.

The front ends' infer paths use a few attributes of the data plane (limits, stream
slots, the address checks, infer); this answers them the same way over the hop, so
the front ends stay exactly as they are in one process. Everything the infer paths do
not use (metadata, load, shared-memory registration...) is passed through to the
engine's own HTTP and gRPC listeners, not answered here.
"""

from __future__ import annotations

from aiaas.serve.limits import RequestLimits, StreamSlots, check_model_name
from aiaas.serve.types import InferRequest, InferResponse
from aiaas.serve.workers.hop import EngineClient


class RemoteDataPlane:
    """The data plane of a front-end process, answered by the engine process."""

    def __init__(self, client: EngineClient, limits: RequestLimits) -> None:
        self.client = client
        self.limits = limits
        #: Open streams per client address, counted per front-end process: a client whose
        #: connections the kernel spreads over N processes may hold up to N times the limit.
        self.streams = StreamSlots(limits.max_streams_per_client)
        self.started = False

    def check_addressed(self, name: str, version: str | None) -> None:
        """Only the name rules here: whether a model answers is the engine's to say, and
        asking it before every request would cost a second hop. An unknown model is still
        404 / NOT_FOUND, from ``infer`` or, when the body is bad, ``confirm_addressed``."""
        check_model_name(name)

    async def confirm_addressed(self, name: str, version: str | None) -> None:
        """Raise NotFound when no loaded model answers this address (asks the engine)."""
        await self.client.call("addressed", name=name, version=version)

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        return await self.client.infer(name, version, request)
