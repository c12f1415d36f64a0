"""The registry over HTTP, under `/v2/registry/...`: reads for anyone who can reach
the server, alias changes only for the holder of the admin token.

Without a token, writes are refused unless the caller states the server listens
on loopback only (and then only loopback clients may write): moving the
`production` alias decides what every client is answered by.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.admin import AdminGuard, OpenTo, is_loopback
from aiaas.errors import AiaasError, InvalidArgument, Unauthenticated
from aiaas.registry.api import Registry
from aiaas.registry.uri import parse_version, version_uri

log = logging.getLogger(__name__)

PREFIX = "/v2/registry"
MAX_BODY_BYTES = 64 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]


class AliasBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(gt=0)


__all__ = ["is_loopback", "registry_routes"]


def registry_routes(
    registry: Registry,
    *,
    admin_token: str | None = None,
    loopback_only: bool = False,
    guard: AdminGuard | None = None,
) -> list[Route]:
    """The routes to mount in the server's Starlette app; ``guard`` (the server's one
    rule for admin actions) wins over ``admin_token`` and ``loopback_only``."""
    if guard is None:
        guard = AdminGuard(admin_token, OpenTo.LOOPBACK if loopback_only else OpenTo.NOBODY)
    api = _RegistryApi(registry, guard)
    model = f"{PREFIX}/models/{{name}}"
    table: list[tuple[str, Endpoint, str]] = [
        (f"{PREFIX}/models", api.list_models, "GET"),
        (model, api.get_model, "GET"),
        (f"{model}/versions", api.list_versions, "GET"),
        (f"{model}/versions/{{version}}", api.get_version, "GET"),
        (f"{model}/versions/{{version}}/lineage", api.lineage, "GET"),
        (f"{model}/aliases", api.list_aliases, "GET"),
        (f"{model}/aliases/{{alias}}", api.get_alias, "GET"),
        (f"{model}/aliases/{{alias}}", api.set_alias, "PUT"),
        (f"{model}/aliases/{{alias}}", api.delete_alias, "DELETE"),
    ]
    return [Route(path, _guarded(endpoint), methods=[method]) for path, endpoint, method in table]


def _json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status_code, headers=headers)


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Our errors carry their HTTP status; anything else is logged and answered 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AiaasError as error:
            headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
            return _json({"error": error.message}, error.http_status, headers)
        except Exception:
            log.exception("registry API failed on %s %s", request.method, request.url.path)
            return _json({"error": "internal server error"}, 500)

    return guarded


class _RegistryApi:
    def __init__(self, registry: Registry, guard: AdminGuard) -> None:
        self.registry = registry
        self.guard = guard

    async def list_models(self, request: Request) -> Response:
        models = await run_in_threadpool(self.registry.list_models)
        return _json({"models": [model.to_dict() for model in models]})

    async def get_model(self, request: Request) -> Response:
        model = await run_in_threadpool(self.registry.get_model, request.path_params["name"])
        return _json(model.to_dict())

    async def list_versions(self, request: Request) -> Response:
        found = await run_in_threadpool(self.registry.versions, request.path_params["name"])
        return _json({"versions": [version.to_dict() for version in found]})

    async def get_version(self, request: Request) -> Response:
        version = await run_in_threadpool(self.registry.resolve, _version_uri(request))
        return _json(version.to_dict())

    async def lineage(self, request: Request) -> Response:
        found = await run_in_threadpool(self.registry.lineage, _version_uri(request))
        return _json(found.to_dict())

    async def list_aliases(self, request: Request) -> Response:
        aliases = await run_in_threadpool(self.registry.aliases, request.path_params["name"])
        return _json({"aliases": aliases})

    async def get_alias(self, request: Request) -> Response:
        name, alias = request.path_params["name"], request.path_params["alias"]
        version = await run_in_threadpool(self.registry.resolve, f"models:/{name}@{alias}")
        return _json(version.to_dict())

    async def set_alias(self, request: Request) -> Response:
        self._authorize(request)
        body = await _alias_body(request)
        name, alias = request.path_params["name"], request.path_params["alias"]
        version = await run_in_threadpool(self.registry.set_alias, name, alias, body.version)
        return _json({"name": name, "alias": alias, "version": version.version, "uri": version.uri})

    async def delete_alias(self, request: Request) -> Response:
        self._authorize(request)
        name, alias = request.path_params["name"], request.path_params["alias"]
        await run_in_threadpool(self.registry.delete_alias, name, alias)
        return _json({"name": name, "alias": alias, "deleted": True})

    def _authorize(self, request: Request) -> None:
        client = request.client.host if request.client else None
        self.guard.check(request.headers.get("authorization"), client, "a registry write")


def _version_uri(request: Request) -> str:
    name = request.path_params["name"]
    return version_uri(name, parse_version(request.path_params["version"]))


async def _alias_body(request: Request) -> AliasBody:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise InvalidArgument(f"request body over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise InvalidArgument(f"request body over {MAX_BODY_BYTES} bytes")
    try:
        return AliasBody.model_validate_json(bytes(body))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        raise InvalidArgument(f'expected {{"version": N}}: {where}: {first["msg"]}') from None
