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
import math
import time
from collections.abc import Callable
from typing import Any

from aiaas.errors import AiaasError, NotFound, Unavailable
from aiaas.serve.limits import RequestLimits, check_model_name, once
from aiaas.serve.types import InferRequest, InferResponse
from aiaas.serve.workers.hop import EngineClient

#: How long a front end takes the engine's word that it serves a model itself (or that
#: no process serves it) before it asks again: a model loaded meanwhile gets its own
#: process, and its calls go there from then on.
_LOCAL_ROUTE_S = 1.0
_MAX_LOCAL_ROUTES = 4096
#: How long a model's first call waits for its process to take the connection: the
#: engine has just said it serves there, so only a busy machine makes it slow.
_FIRST_CONNECT_S = 10.0


class RemoteDataPlane:
    """The data plane of a front-end process, answered by the engine process, or for a
    model that runs in a process of its own, by that process."""

    def __init__(self, client: EngineClient, limits: RequestLimits) -> None:
        self.client = client
        self.limits = limits
        self.started = False
        #: Releases on their way to the engine (a task is kept until it is done).
        self._releasing: set[asyncio.Task[Any]] = set()
        #: By model: the process that serves its calls, and until when that holds.
        self._routes: dict[str, tuple[EngineClient, float]] = {}
        #: The models' processes by address, connected once asked for.
        self._model_clients: dict[str, EngineClient] = {}

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
        client = await self._route(name)
        if client is self.client:
            return await self.client.infer(name, version, request)
        try:
            return await client.infer(name, version, request)
        except (NotFound, Unavailable):
            # Unloaded (its process stopped), or restarting: the engine says which.
            self._routes.pop(name, None)
            if await self._route(name) is not self.client:
                raise
            return await self.client.infer(name, version, request)

    async def _route(self, name: str) -> EngineClient:
        route = self._routes.get(name)
        if route is not None and route[1] > time.monotonic():
            return route[0]
        address = await self.client.call("route", name=name)
        if address is None:
            self._remember_local(name)
            return self.client
        client = self._model_clients.get(address)
        if client is None:
            client = self._model_clients[address] = EngineClient(
                address, first_connect_wait_s=_FIRST_CONNECT_S
            )
            client.start()
        self._routes[name] = (client, math.inf)  # its process's address never changes
        return client

    def _remember_local(self, name: str) -> None:
        """Names a client makes up must not grow the table without bound: past a size,
        the lapsed entries go, and if that is not enough this one is not kept."""
        now = time.monotonic()
        if len(self._routes) >= _MAX_LOCAL_ROUTES:
            self._routes = {n: route for n, route in self._routes.items() if route[1] > now}
        if len(self._routes) < _MAX_LOCAL_ROUTES:
            self._routes[name] = (self.client, now + _LOCAL_ROUTE_S)

    async def close(self) -> None:
        """Stop every connection; calls still in flight fail with Unavailable."""
        clients = [self.client, *self._model_clients.values()]
        self._model_clients.clear()
        self._routes.clear()
        await asyncio.gather(*(client.close() for client in clients))
