"""Open Inference Protocol V2 over HTTP. Translates requests to data-plane calls and
results back to HTTP; knows nothing about models or ONNX.

Routes are plain Starlette endpoints on purpose: the V2 bodies are decoded by the
codec in one pass (orjson + numpy), with no per-field validation layer in between.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from aiaas.admin import AdminGuard
from aiaas.errors import AiaasError, InvalidArgument, PayloadTooLarge, Unauthenticated
from aiaas.serve import uploads
from aiaas.serve.protocol import http_encoding, rest_codec
from aiaas.serve.provenance import HEADER as PROVENANCE_HEADER

if TYPE_CHECKING:  # the front-end processes run no model: no onnxruntime there
    from aiaas.serve.dataplane import DataPlane

log = logging.getLogger(__name__)

_HEADER_LENGTH_NAME = b"inference-header-content-length"
_JSON_TYPE = (b"content-type", b"application/json")
_OCTET_TYPE = (b"content-type", b"application/octet-stream")
Endpoint = Callable[[Request], Awaitable[Response]]
_SHM = "/v2/systemsharedmemory"
_CUDA_SHM = "/v2/cudasharedmemory"
_PROVENANCE = PROVENANCE_HEADER.encode()


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=rest_codec.JSON_OPTIONS),
        status_code=status_code,
        media_type="application/json",
    )


def error_response(error: AiaasError) -> Response:
    response = json_response({"error": error.message}, error.http_status)
    if isinstance(error, Unauthenticated):
        response.headers["www-authenticate"] = "Bearer"
    return response


def _guarded(endpoint: Endpoint) -> Endpoint:
    """One place where errors become HTTP: ours carry their status, others are logged as 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AiaasError as error:
            return error_response(error)
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.url.path)
            return json_response({"error": "internal server error"}, 500)

    return guarded


class RestFrontEnd:
    def __init__(
        self,
        dataplane: DataPlane,
        *,
        max_request_bytes: int,
        admin: AdminGuard,
        provenance_header: bool = False,
    ) -> None:
        self.dataplane = dataplane
        self.max_request_bytes = max_request_bytes
        self.admin = admin
        self.provenance_header = provenance_header

    def _authorize(self, request: Request, action: str) -> None:
        """Admin actions: checked before the body is read."""
        client = request.client.host if request.client else None
        self.admin.check(request.headers.get("authorization"), client, action)

    def routes(self) -> list[Route]:
        model = "/v2/models/{model}"
        version = "/v2/models/{model}/versions/{version}"
        table: list[tuple[str, Endpoint, str]] = [
            ("/v2/health/live", self.live, "GET"),
            ("/v2/health/ready", self.ready, "GET"),
            ("/v2", self.server_metadata, "GET"),
            ("/v2/models/stats", self.model_statistics, "GET"),
            (f"{model}/stats", self.model_statistics, "GET"),
            (f"{version}/stats", self.model_statistics, "GET"),
            (f"{model}/config", self.model_config, "GET"),
            (f"{version}/config", self.model_config, "GET"),
            (f"{model}/lineage", self.model_lineage, "GET"),
            (f"{version}/lineage", self.model_lineage, "GET"),
            (model, self.model_metadata, "GET"),
            (version, self.model_metadata, "GET"),
            (f"{model}/ready", self.model_ready, "GET"),
            (f"{version}/ready", self.model_ready, "GET"),
            (f"{model}/infer", self.infer, "POST"),
            (f"{version}/infer", self.infer, "POST"),
            ("/v2/repository/index", self.repository_index, "POST"),
            ("/v2/repository/models/{model}/load", self.load, "POST"),
            ("/v2/repository/models/{model}/unload", self.unload, "POST"),
            (f"{_SHM}/status", self.shm_status, "GET"),
            (f"{_SHM}/region/{{region}}/status", self.shm_status, "GET"),
            (f"{_SHM}/region/{{region}}/register", self.shm_register, "POST"),
            (f"{_SHM}/unregister", self.shm_unregister, "POST"),
            (f"{_SHM}/region/{{region}}/unregister", self.shm_unregister, "POST"),
            (f"{_CUDA_SHM}/status", self.cuda_shm_status, "GET"),
            (f"{_CUDA_SHM}/region/{{region}}/status", self.cuda_shm_status, "GET"),
            (f"{_CUDA_SHM}/region/{{region}}/register", self.cuda_shm_register, "POST"),
            (f"{_CUDA_SHM}/unregister", self.cuda_shm_unregister, "POST"),
            (f"{_CUDA_SHM}/region/{{region}}/unregister", self.cuda_shm_unregister, "POST"),
        ]
        return [Route(path, _guarded(fn), methods=[method]) for path, fn, method in table]

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    def with_fast_infer(self, app: ASGIApp) -> ASGIApp:
        """Wrap an ASGI app so that infer requests skip routing and middleware.

        Inference is the only hot path: it is answered straight from the ASGI
        events (profiling showed Starlette's middleware, routing and Request
        objects costing more than decoding the V2 body itself). Everything
        else, and anything that does not look like an infer call, goes to ``app``.
        """

        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            target = _infer_target(scope)
            if target is None:
                await app(scope, receive, send)
                return
            status, headers, body = await self._fast_infer(scope, receive, *target)
            # A known length spares the server chunked framing and the client its parsing.
            headers.append((b"content-length", b"%d" % len(body)))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return asgi

    async def _fast_infer(
        self, scope: Scope, receive: Receive, model: str, version: str | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        headers = dict(scope["headers"])
        try:
            body = await self._receive_body(headers, receive)
        except AiaasError as error:
            return error.http_status, [_JSON_TYPE], orjson.dumps({"error": error.message})
        return await self._answer_infer(headers, body, model, version)

    async def _answer_infer(
        self, headers: dict[bytes, bytes], body: bytes, model: str, version: str | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body of the answer to one infer call: the one place both
        the fast path and the routed endpoint decode, run and encode."""
        try:
            self.dataplane.check_addressed(model, version)
            try:
                body = http_encoding.decode_body(
                    body, _text(headers.get(b"content-encoding")), self.max_request_bytes
                )
                header_length = _parse_header_length(headers.get(_HEADER_LENGTH_NAME))
                infer_request = rest_codec.decode_infer_request(
                    body, header_length, self.dataplane.limits
                )
            except AiaasError:
                # An unknown model is 404 whatever the body: a remote data plane knows only now.
                await self.dataplane.confirm_addressed(model, version)
                raise
            response = await self.dataplane.infer(model, version, infer_request)
            content, json_length = rest_codec.encode_infer_response(response, infer_request)
        except AiaasError as error:
            return error.http_status, [_JSON_TYPE], orjson.dumps({"error": error.message})
        except Exception:
            log.exception("unexpected error serving infer for model %s", model)
            return 500, [_JSON_TYPE], b'{"error":"internal server error"}'
        if json_length is None:
            response_headers = [_JSON_TYPE]
        else:
            response_headers = [_OCTET_TYPE, (_HEADER_LENGTH_NAME, str(json_length).encode())]
        if self.provenance_header:
            response_headers.append((_PROVENANCE, response.provenance.encode()))
        coding = http_encoding.choose_coding(_text(headers.get(b"accept-encoding")))
        if coding is not None:
            content = http_encoding.encode_body(content, coding)
            response_headers.append((b"content-encoding", coding.encode()))
        return 200, response_headers, content

    async def _receive_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
            raise _too_large(int(declared), self.max_request_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidArgument("the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                raise _too_large(size, self.max_request_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def read_body(self, request: Request, *, decode: bool = True) -> bytes:
        """The request body, refused with 413 as soon as it passes the size limit, and
        decompressed (within the same limit) when ``decode``."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
            raise _too_large(int(declared), self.max_request_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_request_bytes:
                raise _too_large(size, self.max_request_bytes)
            chunks.append(chunk)
        body = b"".join(chunks)
        if not decode:
            return body
        coding = request.headers.get("content-encoding")
        return http_encoding.decode_body(body, coding, self.max_request_bytes)

    # ---- endpoints -----------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return json_response({"live": self.dataplane.live()})

    async def ready(self, request: Request) -> Response:
        ready = self.dataplane.ready()
        return json_response({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(self.dataplane.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.dataplane.model_metadata(params["model"], params.get("version")))

    async def model_lineage(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.dataplane.model_lineage(params["model"], params.get("version")))

    async def model_config(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.dataplane.model_config(params["model"], params.get("version")))

    async def model_statistics(self, request: Request) -> Response:
        params = request.path_params
        stats = await self.dataplane.model_statistics(params.get("model"), params.get("version"))
        return json_response(stats)

    async def model_ready(self, request: Request) -> Response:
        params = request.path_params
        ready = self.dataplane.model_ready(params["model"], params.get("version"))
        return json_response({"name": params["model"], "ready": ready}, 200 if ready else 503)

    async def infer(self, request: Request) -> Response:
        body = await self.read_body(request, decode=False)
        params = request.path_params
        headers = {k.lower(): v for k, v in request.headers.raw}
        status, response_headers, content = await self._answer_infer(
            headers, body, params["model"], params.get("version")
        )
        response = Response(content, status_code=status)
        for key, value in response_headers:
            response.headers[key.decode()] = value.decode()
        return response

    async def repository_index(self, request: Request) -> Response:
        body = await self.read_body(request)
        options = rest_codec.loads_json(body) if body.strip() else {}
        if not isinstance(options, dict):
            raise InvalidArgument("the repository index body must be a JSON object")
        ready_only = bool(options.get("ready", False))
        return json_response(self.dataplane.repository.index(ready_only))

    async def load(self, request: Request) -> Response:
        self._authorize(request, "loading a model")
        body = await self.read_body(request)
        options = rest_codec.loads_json(body) if body.strip() else {}
        if not isinstance(options, dict):
            raise InvalidArgument("the load body must be a JSON object")
        name = request.path_params["model"]
        parameters = options.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidArgument(f"failed to load '{name}': 'parameters' must be a JSON object")
        await self.dataplane.load(name, _decode_files(name, parameters))
        return Response(status_code=200)

    async def unload(self, request: Request) -> Response:
        self._authorize(request, "unloading a model")
        await self.read_body(request)
        await self.dataplane.unload(request.path_params["model"])
        return Response(status_code=200)

    # ---- system shared memory extension ----------------------------------------------

    async def shm_status(self, request: Request) -> Response:
        region = request.path_params.get("region")
        return json_response(self.dataplane.shared_memory.status(region))

    async def shm_register(self, request: Request) -> Response:
        self._authorize(request, "registering shared memory")
        options = rest_codec.loads_json(await self.read_body(request))
        if not isinstance(options, dict):
            raise InvalidArgument("the register body must be a JSON object")
        await self.dataplane.register_shared_memory(
            request.path_params["region"],
            options.get("key"),
            options.get("offset", 0),
            options.get("byte_size"),
        )
        return Response(status_code=200)

    async def shm_unregister(self, request: Request) -> Response:
        self._authorize(request, "unregistering shared memory")
        await self.read_body(request)
        await self.dataplane.unregister_shared_memory(request.path_params.get("region"))
        return Response(status_code=200)

    # ---- CUDA shared memory extension (a server without GPUs) ------------------------

    async def cuda_shm_status(self, request: Request) -> Response:
        region = request.path_params.get("region")
        return json_response(self.dataplane.cuda_shared_memory.status(region))

    async def cuda_shm_register(self, request: Request) -> Response:
        self._authorize(request, "registering shared memory")
        await self.read_body(request)
        self.dataplane.cuda_shared_memory.register(request.path_params["region"])
        return Response(status_code=200)

    async def cuda_shm_unregister(self, request: Request) -> Response:
        self._authorize(request, "unregistering shared memory")
        await self.read_body(request)
        self.dataplane.cuda_shared_memory.unregister(request.path_params.get("region"))
        return Response(status_code=200)


def _decode_files(model: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Over REST, ``file:`` load parameters carry base64; the data plane takes bytes."""
    decoded = dict(parameters)
    for key, value in parameters.items():
        if not key.startswith(uploads.FILE_PREFIX):
            continue
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidArgument(
                f"failed to load '{model}': parameter '{key}' is not base64-encoded file content"
            ) from None
    return decoded


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("latin-1")


def _parse_header_length(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    if not raw.strip().isdigit():
        text = raw.decode("latin-1")
        raise InvalidArgument(f"Inference-Header-Content-Length '{text}' is not a byte count")
    return int(raw)


def _infer_target(scope: Scope) -> tuple[str, str | None] | None:
    """(model, version) when the scope is a V2 infer call, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    parts = scope["path"].split("/")
    # ['', 'v2', 'models', m, 'infer'] or ['', 'v2', 'models', m, 'versions', v, 'infer']
    if len(parts) == 5 and parts[1:3] == ["v2", "models"] and parts[4] == "infer" and parts[3]:
        return unquote(parts[3]), None
    if (
        len(parts) == 7
        and parts[1:3] == ["v2", "models"]
        and parts[4] == "versions"
        and parts[6] == "infer"
        and parts[3]
    ):
        return unquote(parts[3]), unquote(parts[5])
    return None


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit} bytes")
