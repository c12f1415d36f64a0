"""The registry over HTTP, under `/v2/registry/...`: reads for anyone who can reach
the server, alias changes and device reports only for the holder of the admin token.

Reads answer with an ETag and honour `If-None-Match` (304), so an edge agent polling
an alias that has not moved costs one small answer; a version's files download with
byte ranges (see `http_files`); devices report their state with PUT and are listed
with GET `/v2/registry/devices`.

Without a token, writes are refused unless the caller states the server listens
on loopback only (and then only loopback clients may write): moving the
`production` alias decides what every client is answered by.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.admin import AdminGuard, OpenTo, is_loopback
from aiaas.errors import AiaasError, InvalidArgument, NotFound, Unauthenticated
from aiaas.registry.api import Registry
from aiaas.registry.http_files import etag_matches, file_response
from aiaas.registry.records import DeviceReport
from aiaas.registry.uri import parse_version, parse_version_uri, version_uri

log = logging.getLogger(__name__)

PREFIX = "/v2/registry"
MAX_BODY_BYTES = 64 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]
Body = TypeVar("Body", bound=BaseModel)


class AliasBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(gt=0)


class DeviceBody(BaseModel):
    """An edge agent's report; the registry adds its own time."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str = Field(max_length=256)
    state: str = Field(pattern=r"^[a-z_]{1,32}$")
    version: int | None = Field(default=None, gt=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    counts: dict[str, int] = Field(default_factory=dict, max_length=32)
    last_error: str | None = Field(default=None, max_length=2000)
    agent_time: str | None = Field(default=None, max_length=64)


__all__ = ["is_loopback", "read_json_body", "registry_routes"]


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
        (f"{model}/versions/{{version}}/files/{{path:path}}", api.get_file, "GET"),
        (f"{model}/aliases", api.list_aliases, "GET"),
        (f"{model}/aliases/{{alias}}", api.get_alias, "GET"),
        (f"{model}/aliases/{{alias}}", api.set_alias, "PUT"),
        (f"{model}/aliases/{{alias}}", api.delete_alias, "DELETE"),
        (f"{PREFIX}/devices", api.list_devices, "GET"),
        (f"{PREFIX}/devices/{{device_id}}", api.put_device, "PUT"),
    ]
    return [Route(path, _guarded(endpoint), methods=[method]) for path, endpoint, method in table]


def _json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status_code, headers=headers)


def _conditional(request: Request, content: Any) -> Response:
    """A JSON answer with its ETag, or 304 when the client already holds these bytes."""
    response = JSONResponse(content)
    etag = f'"{hashlib.sha256(response.body).hexdigest()[:32]}"'
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return response


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
        return _conditional(request, {"models": [model.to_dict() for model in models]})

    async def get_model(self, request: Request) -> Response:
        model = await run_in_threadpool(self.registry.get_model, request.path_params["name"])
        return _conditional(request, model.to_dict())

    async def list_versions(self, request: Request) -> Response:
        found = await run_in_threadpool(self.registry.versions, request.path_params["name"])
        return _conditional(request, {"versions": [version.to_dict() for version in found]})

    async def get_version(self, request: Request) -> Response:
        version = await run_in_threadpool(self.registry.resolve, _version_uri(request))
        return _conditional(request, version.to_dict())

    async def lineage(self, request: Request) -> Response:
        found = await run_in_threadpool(self.registry.lineage, _version_uri(request))
        return _json(found.to_dict())

    async def list_aliases(self, request: Request) -> Response:
        aliases = await run_in_threadpool(self.registry.aliases, request.path_params["name"])
        return _json({"aliases": aliases})

    async def get_alias(self, request: Request) -> Response:
        name, alias = request.path_params["name"], request.path_params["alias"]
        version = await run_in_threadpool(self.registry.resolve, f"models:/{name}@{alias}")
        return _conditional(request, version.to_dict())

    async def get_file(self, request: Request) -> Response:
        version = await run_in_threadpool(self.registry.resolve, _version_uri(request))
        path = request.path_params["path"]
        item = next((item for item in version.files if item.path == path), None)
        if item is None:
            raise NotFound(f"{version.uri} has no file {path!r}")
        what = f"{path} of {version.uri}"
        handle = await run_in_threadpool(self.registry.artifacts.open_blob, item.sha256, what)
        return file_response(request, item, handle)

    async def list_devices(self, request: Request) -> Response:
        model = request.query_params.get("model")
        devices = await run_in_threadpool(self.registry.devices, model)
        return _conditional(request, {"devices": [device.to_dict() for device in devices]})

    async def put_device(self, request: Request) -> Response:
        self._authorize(request)
        body = await read_json_body(request, DeviceBody, "a device report")
        try:
            name = parse_version_uri(body.model_uri).name
        except AiaasError as error:
            raise InvalidArgument(f"model_uri: {error.message}") from None
        report = DeviceReport(
            device_id=request.path_params["device_id"],
            model=name,
            **body.model_dump(),
        )
        stored = await run_in_threadpool(self.registry.report_device, report)
        return _json(stored.to_dict())

    async def set_alias(self, request: Request) -> Response:
        self._authorize(request)
        body = await read_json_body(request, AliasBody, '{"version": N}')
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


async def read_json_body(
    request: Request, shape: type[Body], expected: str, limit: int = MAX_BODY_BYTES
) -> Body:
    """A small JSON body (an admin action's) read within ``limit`` bytes and validated;
    a bad one is a 400 saying what was expected and where it went wrong."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise InvalidArgument(f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InvalidArgument(f"request body over {limit} bytes")
    try:
        return shape.model_validate_json(bytes(body))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        raise InvalidArgument(f"expected {expected}: {where}: {first['msg']}") from None
