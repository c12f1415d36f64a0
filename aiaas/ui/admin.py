"""The catalogue's admin actions (move an alias, add a tag, load or unload a model), each
behind the server's admin token sent as `Authorization: Bearer`. A server started
without a token refuses them all (403); a missing or wrong token is 401.

The pages only ever receive the token in this header, from the browser's session
storage; no response contains it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aiaas.errors import InvalidArgument, PermissionDenied, Unauthenticated
from aiaas.registry.http import read_json_body
from aiaas.serve.dataplane import DataPlane

MAX_BODY_BYTES = 16 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]


class Writable(Protocol):
    """The registry catalogue's writes."""

    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    def add_tag(self, name: str, version: int, key: str, value: str) -> None: ...


class AliasMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(min_length=1, max_length=64)
    version: int = Field(gt=0)


class NewTag(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=250)
    value: str = Field(max_length=5000)


Body = TypeVar("Body", bound=BaseModel)


class AdminActions:
    def __init__(
        self, dataplane: DataPlane, registry: Writable | None, admin_token: str | None
    ) -> None:
        self.dataplane = dataplane
        self.registry = registry
        self.admin_token = admin_token or None

    @property
    def enabled(self) -> bool:
        return self.admin_token is not None

    def authorize(self, request: Request) -> None:
        if self.admin_token is None:
            raise PermissionDenied("admin actions are off: start the server with --admin-token")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.admin_token.encode()
        ):
            raise Unauthenticated("admin actions need 'Authorization: Bearer <admin token>'")

    async def check(self, request: Request) -> Response:
        """Lets the page tell a mistyped token at once, before any action."""
        self.authorize(request)
        return Response(status_code=204)

    async def move_alias(self, request: Request) -> Response:
        self.authorize(request)
        body = await read_json_body(
            request, AliasMove, '{"alias": NAME, "version": N}', MAX_BODY_BYTES
        )
        name = request.path_params["name"]
        registry = self._registry()
        await run_in_threadpool(registry.set_alias, name, body.alias, body.version)
        return JSONResponse({"name": name, "alias": body.alias, "version": body.version})

    async def add_tag(self, request: Request) -> Response:
        self.authorize(request)
        body = await read_json_body(request, NewTag, '{"key": K, "value": V}', MAX_BODY_BYTES)
        name, version = request.path_params["name"], request.path_params["version"]
        registry = self._registry()
        await run_in_threadpool(registry.add_tag, name, version, body.key, body.value)
        return JSONResponse({"name": name, "version": version, "tag": {body.key: body.value}})

    async def load(self, request: Request) -> Response:
        self.authorize(request)
        await self.dataplane.load(request.path_params["name"], {})
        return JSONResponse({"name": request.path_params["name"], "loaded": True})

    async def unload(self, request: Request) -> Response:
        self.authorize(request)
        await self.dataplane.unload(request.path_params["name"])
        return JSONResponse({"name": request.path_params["name"], "loaded": False})

    def _registry(self) -> Writable:
        if self.registry is None:
            raise InvalidArgument("this server has no registry: aliases and tags live there")
        return self.registry
