"""A front-end process of `aiaas serve --workers N`: it listens on the public HTTP and
gRPC ports beside its siblings (SO_REUSEPORT: the kernel spreads the connections),
decodes and validates V2 infer calls itself (REST JSON and binary, gRPC ModelInfer and
ModelStreamInfer: the same RestFrontEnd fast path and servicer as one process, over a
RemoteDataPlane) and sends the tensors to the engine over the hop, so that parsing and
encoding use every core. Everything else passes through to the engine unchanged.

Run as `python -m aiaas.serve.workers.frontend` by the supervisor.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import grpc

from aiaas.admin import AdminGuard, serving_guard
from aiaas.errors import AiaasError
from aiaas.exit_codes import exit_code_for
from aiaas.serve.http_server import HttpServer, http_config, listen, request_limits
from aiaas.serve.logs import configure_logging
from aiaas.serve.protocol.grpc_server import (
    REGISTERED_RPCS,
    SERVICE,
    GrpcFrontEnd,
    servicer_handlers,
    tls_files,
)
from aiaas.serve.protocol.rest import RestFrontEnd
from aiaas.serve.workers import child
from aiaas.serve.workers.hop import EngineClient
from aiaas.serve.workers.passthrough import GrpcPassthrough, HttpPassthrough
from aiaas.serve.workers.remote import RemoteDataPlane

log = logging.getLogger("aiaas.serve.workers")


class FrontEndGrpc(GrpcFrontEnd):
    """The public gRPC port of one front end: ModelInfer and ModelStreamInfer answered
    here by the usual servicer (over the RemoteDataPlane), every other RPC relayed to the
    engine. Unlike one process it shares the port with its siblings (SO_REUSEPORT); the
    supervisor has made sure no other server holds it."""

    shares_port = True

    def __init__(self, dataplane: Any, *, engine_address: str, **options: Any) -> None:
        super().__init__(dataplane, **options)
        self.passthrough = GrpcPassthrough(engine_address)

    def _register(self, server: grpc.aio.Server) -> None:
        every = servicer_handlers(self._servicer)
        handlers = {rpc: every[rpc] for rpc in REGISTERED_RPCS}
        generic = grpc.method_handlers_generic_handler(SERVICE, handlers)
        server.add_generic_rpc_handlers((generic, self.passthrough))
        # Registered too, as one process does: grpcio routes them by path without asking
        # the generic handlers.
        server.add_registered_method_handlers(SERVICE, handlers)

    async def start(self) -> None:
        self.passthrough.open()
        await super().start()

    async def stop(self, grace_s: float) -> None:
        await super().stop(grace_s)
        await self.passthrough.close()


def _bind(
    config: child.ChildConfig, dataplane: RemoteDataPlane, admin: AdminGuard
) -> tuple[socket.socket, FrontEndGrpc | None]:
    """Take this process's share of the public ports (raises Unavailable)."""
    settings = config.settings
    http_socket = listen(settings.host, config.http_port, "HTTP", reuse_port=True)
    if not config.grpc_port:
        return http_socket, None
    grpc_front = FrontEndGrpc(
        dataplane,
        engine_address=child.engine_grpc_address(config.run_dir),
        host=settings.host,
        port=config.grpc_port,
        max_request_bytes=settings.max_request_bytes,
        provenance_header=settings.provenance_header,
        admin=admin,
        tls=tls_files(settings.tls_cert, settings.tls_key),
        handshake_timeout_s=settings.header_timeout_s,
    )
    try:
        grpc_front.bind()
    except AiaasError:
        http_socket.close()
        raise
    return http_socket, grpc_front


async def serve(config: child.ChildConfig) -> None:
    settings = config.settings
    status = child.Status(config.status_fd)
    dataplane = RemoteDataPlane(
        EngineClient(child.engine_hop_address(config.run_dir)), request_limits(settings)
    )
    admin = serving_guard(settings.admin_token, settings.host, settings.allow_open_admin)
    try:
        http_socket, grpc_front = _bind(config, dataplane, admin)
    except AiaasError as error:
        status.failed(error)
        raise SystemExit(exit_code_for(error)) from None
    rest = RestFrontEnd(
        dataplane,  # type: ignore[arg-type]  # what the infer path uses, over the hop
        max_request_bytes=settings.max_request_bytes,
        admin=admin,
        provenance_header=settings.provenance_header,
    )
    passthrough = HttpPassthrough(child.engine_http_path(config.run_dir))
    grace_s = settings.shutdown_timeout_s

    def stop_grpc() -> None:
        if grpc_front is not None:
            grpc_front.begin_stop(grace_s)

    http = HttpServer(
        http_config(settings, rest.with_fast_infer(passthrough), lifespan="off"),
        on_signal=stop_grpc,
        on_started=status.ready,
    )
    dataplane.client.start()
    try:
        if grpc_front is not None:
            await grpc_front.start()
        dataplane.started = True
        await http.serve(sockets=[http_socket])
    finally:
        dataplane.started = False
        if grpc_front is not None:
            await grpc_front.stop(grace_s)
        await passthrough.aclose()
        await dataplane.close()
        http_socket.close()


def main() -> None:
    config = child.read_config()
    configure_logging(config.settings, f"front end {config.index}")
    child.run_async(serve(config))


if __name__ == "__main__":
    main()
