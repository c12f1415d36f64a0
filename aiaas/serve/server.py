"""The composition root: settings in, a running server out.

Builds the repository, the data plane and the front ends, runs them on one event
loop, and shuts down the way an orchestrator expects: on SIGTERM/SIGINT stop
accepting, finish what is in flight (up to a bound), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from prometheus_client import start_http_server
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiaas.admin import serving_guard
from aiaas.errors import cannot_listen
from aiaas.serve import metrics
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.hosting import Hosting
from aiaas.serve.http_server import HttpServer, http_config, listen, request_limits
from aiaas.serve.logs import configure_logging
from aiaas.serve.protocol import openapi
from aiaas.serve.protocol.generate import GenerateFrontEnd
from aiaas.serve.protocol.grpc_server import GrpcFrontEnd, tls_files
from aiaas.serve.protocol.openai import OpenAIFrontEnd
from aiaas.serve.protocol.openai_errors import OpenAIError, envelope
from aiaas.serve.protocol.rest import RestFrontEnd, json_response
from aiaas.serve.repository import ModelRepository
from aiaas.serve.settings import ControlMode, ServerSettings
from aiaas.serve.sources import DirectorySource, ModelSource
from aiaas.ui import PREFIX as UI_PREFIX
from aiaas.ui import CatalogueUI

__all__ = ["Server", "ServerSettings", "run"]

if TYPE_CHECKING:
    from aiaas.serve.from_registry import RegistryServing

log = logging.getLogger("aiaas.serve")


class Server:
    """Everything one `aiaas serve` process runs."""

    def __init__(
        self,
        settings: ServerSettings,
        sources: list[ModelSource] | None = None,
        *,
        grpc_address: str | None = None,
        hosting: Hosting | None = None,
    ) -> None:
        """``grpc_address``: a private ``unix:`` address for gRPC instead of the public port
        (the engine process behind ``--workers`` front ends); ``hosting``: where models
        run, when not in this process (that engine process's models)."""
        self.settings = settings
        # First: a server that would leave admin actions open to the network opens nothing.
        self.admin = serving_guard(settings.admin_token, settings.host, settings.allow_open_admin)
        tls = tls_files(settings.tls_cert, settings.tls_key)
        all_sources = list(sources or [])
        if settings.model_repository is not None:
            all_sources.insert(0, DirectorySource(settings.model_repository))
        self.registry = self._open_registry(all_sources)
        if self.registry is not None:
            all_sources.append(self.registry.source)
        self.repository = ModelRepository(
            all_sources, settings.model_control_mode, settings.max_model_bytes, hosting
        )
        self.dataplane = DataPlane(
            self.repository,
            strict_readiness=settings.strict_readiness,
            limits=request_limits(settings),
        )
        provenance = settings.provenance_header
        self.rest = RestFrontEnd(
            self.dataplane,
            max_request_bytes=settings.max_request_bytes,
            admin=self.admin,
            provenance_header=provenance,
        )
        self.openai = OpenAIFrontEnd(
            self.dataplane,
            read_body=self.rest.read_body,
            api_key=settings.api_key,
            provenance_header=provenance,
        )
        self.generate = GenerateFrontEnd(
            self.repository,
            read_body=self.rest.read_body,
            streams=self.dataplane.streams,
            provenance_header=provenance,
        )
        self.grpc = (
            GrpcFrontEnd(
                self.dataplane,
                host=settings.host,
                port=settings.grpc_port,
                max_request_bytes=settings.max_request_bytes,
                provenance_header=provenance,
                admin=self.admin,
                tls=tls if grpc_address is None else None,  # a private socket: plain
                handshake_timeout_s=settings.header_timeout_s,
                address=grpc_address,
            )
            if settings.grpc_port
            else None
        )
        self.metrics = metrics.build_registry(self.repository)
        self.ui = CatalogueUI(
            self.dataplane,
            registry=self.registry.registry if self.registry is not None else None,
            admin_token=settings.admin_token,
        )
        self._poller: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None

    def _open_registry(self, others: list[ModelSource]) -> RegistryServing | None:
        """Only when one is configured: a server without a registry never loads SQLAlchemy."""
        settings = self.settings
        if settings.registry_uri is None and not settings.model:
            return None
        # Alembic's INFO lines on opening the database are no news about serving.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from aiaas.serve.from_registry import RegistryServing, default_cache_dir

        return RegistryServing.open(
            settings.registry_uri,
            settings.artifact_root,
            settings.model,
            cache_dir=settings.registry_cache_dir or default_cache_dir(settings.http_port),
            poll_secs=settings.registry_poll_secs,
            guard=self.admin,
            other_sources=others,
        )

    def http_app(self) -> Starlette:
        registry_routes = self.registry.routes if self.registry is not None else []
        return Starlette(
            routes=[
                *self.rest.routes(),
                *self.generate.routes(),
                *self.openai.routes(),
                *registry_routes,
                *self.ui.routes(),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/openapi.json", self._openapi, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _http_error},
            lifespan=self._lifespan,
        )

    async def _metrics(self, request: Request) -> Response:
        await self.repository.hosting.refresh()
        return Response(metrics.exposition(self.metrics), media_type=metrics.CONTENT_TYPE)

    async def _openapi(self, request: Request) -> Response:
        return json_response(openapi.build_document(registry=self.registry is not None))

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.repository.start(self.settings.load_model)
        if self.settings.model_control_mode == ControlMode.POLL:
            self._poller = asyncio.create_task(self._poll())
        if self.registry is not None:
            # In every control mode: a moved alias is what the server is told to serve.
            self._follower = asyncio.create_task(self.registry.follow(self.repository))
        if self.grpc is not None:
            # Before readiness, so that a server that says ready answers on both ports.
            await self.grpc.start()
        self.dataplane.started = True
        yield
        self.dataplane.started = False
        if self.grpc is not None:
            await self.grpc.stop(self.settings.shutdown_timeout_s)
        if self._poller is not None:
            self._poller.cancel()
        if self._follower is not None:
            self._follower.cancel()
        await self.repository.close()
        self.dataplane.shared_memory.close()  # unmap the clients' regions
        if self.registry is not None:
            self.registry.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_secs)
            try:
                await self.repository.poll_once()
            except Exception:
                log.exception("repository poll failed")

    async def serve(self) -> None:
        """Take every port first, so that one in use is an `Unavailable` before a model
        loads or "startup complete" is logged, and the process leaves nothing behind."""
        settings = self.settings
        http_socket = listen(settings.host, settings.http_port, "HTTP")
        try:
            if self.grpc is not None:
                self.grpc.bind()
            if settings.metrics_port:
                start_metrics(settings.metrics_port, settings.host, self.metrics)
            config = http_config(
                settings,
                self.rest.with_fast_infer(self.http_app()),
                host=settings.host,
                port=http_socket.getsockname()[1],
                lifespan="on",
            )
            http = HttpServer(config, on_signal=self.stop_grpc)
            log.info(
                "catalogue: %s",
                catalogue_url(settings.host, config.port, tls=settings.tls_cert is not None),
            )
            await http.serve(sockets=[http_socket])
        finally:
            http_socket.close()

    def stop_grpc(self) -> None:
        """On a signal gRPC stops taking RPCs at once and drains alongside HTTP."""
        if self.grpc is not None:
            self.grpc.begin_stop(self.settings.shutdown_timeout_s)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    detail = error.detail if error.status_code != 404 else f"no route for {request.url.path}"
    if request.url.path.startswith("/v1/"):
        # A /v1 path no route pattern matches (a newline in it escapes `{rest:path}`)
        # is still answered in OpenAI's shape, as every other /v1 error is.
        message = f"Invalid URL ({request.method} {request.url.path})"
        return json_response(
            envelope(OpenAIError(message, status=error.status_code)), error.status_code
        )
    return json_response({"error": detail}, error.status_code)


def catalogue_url(host: str, port: int, *, tls: bool = False) -> str:
    """Where a browser on this machine finds the catalogue (a wildcard host is loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown = f"[{shown}]" if ":" in shown else shown
    scheme = "https" if tls else "http"
    return f"{scheme}://{shown}:{port}{UI_PREFIX}"


def start_metrics(port: int, host: str, registry: Any) -> None:
    try:
        start_http_server(port, host, registry)
    except OSError as error:
        raise cannot_listen("metrics", f"{host}:{port}", error) from None


def run(settings: ServerSettings, **kwargs: Any) -> None:
    """Run the server until a signal; uses uvloop when it is installed."""
    configure_logging(settings)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    runner(Server(settings, **kwargs).serve())
