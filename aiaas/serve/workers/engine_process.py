"""The engine process of `aiaas serve --workers N`: today's whole Server (repository,
registry following, language-model engines, shared memory, statistics, metrics), except
that each other model runs in a process of its own that it starts (``model_hosts``), so
that batching stays global, each model is in memory once and models run side by side.
It listens only where the front ends reach it: its HTTP app on a Unix socket and its
gRPC service on a `unix:` address (for the routes and RPCs they pass through), and the
hop's EngineService (for the calls they make themselves, and where a model runs).

Run as `python -m aiaas.serve.workers.engine_process` by the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from aiaas.errors import AiaasError
from aiaas.exit_codes import exit_code_for
from aiaas.serve.http_server import HttpServer, http_config
from aiaas.serve.logs import configure_logging
from aiaas.serve.server import Server, catalogue_url, start_metrics
from aiaas.serve.settings import ServerSettings
from aiaas.serve.workers import child
from aiaas.serve.workers.hop import EngineService
from aiaas.serve.workers.model_hosts import ModelHosts

log = logging.getLogger("aiaas.serve.workers")

#: How often the models' processes are asked for statistics for the --metrics-port
#: listener (the main port's /metrics and the statistics extension ask on every read).
_REFRESH_S = 1.0

#: Room for the headers a front end adds (the client's address) to a request whose own
#: headers were just within --max-header-bytes.
_FORWARDING_HEADER_BYTES = 512


def forwarded_client(app: ASGIApp) -> ASGIApp:
    """The client a front end names in X-Forwarded-For (it overwrites whatever the client
    sent) is the request's client, so that per-client rules (admin actions from loopback,
    open streams per client) see who really asked. Only the engine's private Unix socket,
    which has no client address of its own, is wrapped in this."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client") is None:
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    scope["client"] = (value.decode("latin-1"), 0)
                elif name == b"x-forwarded-proto" and value in (b"http", b"https"):
                    scope["scheme"] = value.decode()
        await app(scope, receive, send)

    return asgi


def engine_settings(settings: ServerSettings) -> ServerSettings:
    return settings.model_copy(
        update={"max_header_bytes": settings.max_header_bytes + _FORWARDING_HEADER_BYTES}
    )


async def serve(config: child.ChildConfig) -> None:
    status = child.Status(config.status_fd)
    settings = engine_settings(config.settings)
    for stale in child.engine_files(config.run_dir):  # a killed predecessor's sockets
        stale.unlink(missing_ok=True)
    hosts = ModelHosts(settings, config.run_dir)
    try:
        server = Server(
            settings, grpc_address=child.engine_grpc_address(config.run_dir), hosting=hosts
        )
        hosts.attach(server.repository, server.dataplane.shared_memory)
        if server.grpc is not None:
            server.grpc.bind()
        if settings.metrics_port:
            start_metrics(settings.metrics_port, settings.host, server.metrics)
    except AiaasError as error:
        status.failed(error)
        raise SystemExit(exit_code_for(error)) from None
    hop = EngineService(server.dataplane, child.engine_hop_address(config.run_dir))
    hop.ops["route"] = hosts.route
    serving: list[asyncio.Task[None]] = []

    def started() -> None:
        hop.bind()  # reachable before the supervisor hears "ready" and starts front ends
        loop = asyncio.get_running_loop()
        serving.append(loop.create_task(hop.run()))
        if settings.metrics_port:  # scraped from a thread of its own, which cannot ask
            serving.append(loop.create_task(_refresh_statistics(hosts)))
        status.ready()
        tls = settings.tls_cert is not None
        log.info("catalogue: %s", catalogue_url(settings.host, config.http_port, tls=tls))

    app = forwarded_client(server.rest.with_fast_infer(server.http_app()))
    uds = str(child.engine_http_path(config.run_dir))
    http = HttpServer(
        http_config(settings, app, tls=False, uds=uds, lifespan="on"),
        on_signal=server.stop_grpc,
        on_started=started,
    )
    try:
        await http.serve()
    finally:
        for task in serving:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _refresh_statistics(hosts: ModelHosts) -> None:
    while True:
        await asyncio.sleep(_REFRESH_S)
        await hosts.refresh()


def main() -> None:
    config = child.read_config()
    configure_logging(config.settings, "engine")
    child.run_async(serve(config))


if __name__ == "__main__":
    main()
