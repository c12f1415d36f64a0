"""The composition root: settings in, a running server out.

Builds the repository, the data plane and the front ends, runs them on one event
loop, and shuts down the way an orchestrator expects: on SIGTERM/SIGINT stop
accepting, finish what is in flight (up to a bound), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import start_http_server
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiaas.serve import metrics
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.protocol.rest import RestFrontEnd, json_response
from aiaas.serve.repository import ControlMode, ModelRepository
from aiaas.serve.sources import DirectorySource, ModelSource

log = logging.getLogger("aiaas.serve")


class ServerSettings(BaseSettings):
    """Server settings; flags follow tritonserver's, environment variables use AIAAS_."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_")

    model_repository: Path | None = None
    host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    strict_readiness: bool = False
    log_level: str = "info"
    max_request_bytes: int = Field(64 * 1024 * 1024, gt=0)
    model_control_mode: ControlMode = ControlMode.NONE
    repository_poll_secs: float = Field(15.0, gt=0)
    load_model: list[str] = Field(default_factory=list)
    shutdown_timeout_s: float = Field(30.0, ge=0)
    metrics_port: int | None = Field(None, ge=0, le=65535)


class Server:
    """Everything one `aiaas serve` process runs."""

    def __init__(self, settings: ServerSettings, sources: list[ModelSource] | None = None) -> None:
        self.settings = settings
        all_sources = list(sources or [])
        if settings.model_repository is not None:
            all_sources.insert(0, DirectorySource(settings.model_repository))
        self.repository = ModelRepository(all_sources, settings.model_control_mode)
        self.dataplane = DataPlane(self.repository, strict_readiness=settings.strict_readiness)
        self.rest = RestFrontEnd(self.dataplane, max_request_bytes=settings.max_request_bytes)
        self.metrics = metrics.build_registry(self.repository)
        self._poller: asyncio.Task[None] | None = None

    def http_app(self) -> Starlette:
        return Starlette(
            routes=[*self.rest.routes(), Route("/metrics", self._metrics, methods=["GET"])],
            exception_handlers={HTTPException: _http_error},
            lifespan=self._lifespan,
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(metrics.exposition(self.metrics), media_type=metrics.CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.repository.start(self.settings.load_model)
        if self.settings.metrics_port:
            start_http_server(self.settings.metrics_port, self.settings.host, self.metrics)
        if self.settings.model_control_mode == ControlMode.POLL:
            self._poller = asyncio.create_task(self._poll())
        self.dataplane.started = True
        yield
        self.dataplane.started = False
        if self._poller is not None:
            self._poller.cancel()
        await self.repository.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_secs)
            try:
                await self.repository.poll_once()
            except Exception:
                log.exception("repository poll failed")

    async def serve(self) -> None:
        config = uvicorn.Config(
            self.rest.with_fast_infer(self.http_app()),
            host=self.settings.host,
            port=self.settings.http_port,
            log_level=self.settings.log_level.lower(),
            access_log=False,
            loop="none",
            http="httptools",
            timeout_graceful_shutdown=self.settings.shutdown_timeout_s,
            lifespan="on",
            proxy_headers=False,
            server_header=False,
        )
        http = _HttpServer(config)
        await http.serve()


class _HttpServer(uvicorn.Server):
    """uvicorn's server, but a signal means a clean exit 0 rather than being re-raised."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _stop(self, sig: signal.Signals) -> None:
        log.info("received %s: finishing requests in flight, then exiting", sig.name)
        self.should_exit = True


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    detail = error.detail if error.status_code != 404 else f"no route for {request.url.path}"
    return json_response({"error": detail}, error.status_code)


def run(settings: ServerSettings, **kwargs: Any) -> None:
    """Run the server until a signal; uses uvloop when it is installed."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    runner(Server(settings, **kwargs).serve())
