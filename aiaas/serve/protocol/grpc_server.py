"""The gRPC server's life: take the port before anything else starts (one in use is one
plain `Unavailable`), serve the servicer of `grpc.py`, stop gracefully once. The
servicer translates messages; this module owns the socket and the grpcio server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from aiaas.admin import AdminGuard
from aiaas.errors import InvalidArgument, Unavailable, cannot_listen
from aiaas.serve.protocol.grpc import InferenceServicer
from aiaas.serve.protocol.proto import grpc_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the front-end processes run no model: no onnxruntime there
    from aiaas.serve.dataplane import DataPlane

log = logging.getLogger(__name__)


def _check_free(host: str, port: int, address: str) -> None:
    """Take the port with a plain socket first, so that one in use is our one line: the
    core would log its own failure to fd 2 too, and with GRPC_VERBOSITY inherited from a
    parent (Flower sets it on import) that line cannot be silenced. SO_REUSEADDR as the
    core sets it, no SO_REUSEPORT: a port another server holds is refused either way."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as error:
        raise cannot_listen("gRPC", address, error) from None


@contextlib.contextmanager
def _core_log_silenced() -> Iterator[None]:
    """gRPC's C core logs a failed bind to file descriptor 2 itself; the caller reports it
    as one line instead, should the port be taken between `_check_free` and the bind.
    GRPC_VERBOSITY set by the user lets the core's words through."""
    if os.environ.get("GRPC_VERBOSITY"):
        yield
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tls_files(cert: Path | None, key: Path | None) -> tuple[bytes, bytes] | None:
    """(key, certificate chain) in PEM, read once at startup; both or neither."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidArgument("--tls-cert and --tls-key go together: give both or neither")
    try:
        return key.read_bytes(), cert.read_bytes()
    except OSError as error:
        raise InvalidArgument(f"cannot read {error.filename}: {error.strerror}") from None


SERVICE = "inference.GRPCInferenceService"
#: RPCs the core routes by their path. grpcio keeps one call request pending for each
#: registered method and waits on all of them at once for every call it accepts
#: (`asyncio.wait` over the lot); the generated code registers all twenty, so each
#: inference paid for twenty. Only the inference RPCs are registered here; the rest
#: reach the same handlers through the one generic handler.
REGISTERED_RPCS = ("ModelInfer", "ModelStreamInfer")


class _Handlers:
    """Stands in for the server while the generated code hands over its method handlers,
    so that they are built (serializers and all) by the generated module alone."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers.update(handlers)


def servicer_handlers(servicer: InferenceServicer) -> dict[str, grpc.RpcMethodHandler]:
    """Every RPC's method handler for ``servicer``, by name."""
    captured = _Handlers()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, captured)  # type: ignore[no-untyped-call]
    return captured.handlers


def add_servicer(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Every RPC through one generic handler; the inference RPCs registered as well."""
    handlers = servicer_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, {rpc: handlers[rpc] for rpc in REGISTERED_RPCS})


class GrpcFrontEnd:
    """The gRPC server: built on the running event loop, stopped gracefully once."""

    #: Whether sibling processes listen on the same port (the `--workers` front ends,
    #: whose supervisor holds the port so that no other server can take it).
    shares_port = False

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        host: str,
        port: int,
        max_request_bytes: int,
        provenance_header: bool = False,
        admin: AdminGuard,
        tls: tuple[bytes, bytes] | None = None,
        handshake_timeout_s: float = 10.0,
        address: str | None = None,
    ) -> None:
        """``address``: a private ``unix:`` address to serve on instead of host:port."""
        self.dataplane = dataplane
        self.host, self.port = host, port
        self.address = address or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        self.max_request_bytes = max_request_bytes
        self.tls = tls
        self.handshake_timeout_s = handshake_timeout_s
        self._server: grpc.aio.Server | None = None
        self._servicer = InferenceServicer(dataplane, admin, provenance_header=provenance_header)
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving (binding first if `bind` was not called); refused when a stop
        was asked for first."""
        if self._stopping is not None:
            return
        server = self._server or self.bind()
        await server.start()
        log.info("gRPC inference service listening on %s", self.address)

    def bind(self) -> grpc.aio.Server:
        """Build the server and take the port, before anything else starts, so that a
        port in use is one `Unavailable` at startup rather than a failure after loading."""
        if not self.address.startswith("unix:") and not self.shares_port:
            _check_free(self.host, self.port, self.address)
        server = grpc.aio.server(
            options=[
                # Larger requests are refused by gRPC itself with RESOURCE_EXHAUSTED.
                ("grpc.max_receive_message_length", self.max_request_bytes),
                ("grpc.max_send_message_length", -1),
                # gRPC shares a port between processes by default; a second server on a
                # taken port must fail, as the HTTP one does, not split the traffic.
                ("grpc.so_reuseport", int(self.shares_port)),
                # A client too slow to finish the HTTP/2 (and TLS) handshake is dropped.
                ("grpc.server_handshake_timeout_ms", int(self.handshake_timeout_s * 1000)),
                # Pings find clients that vanished without closing, so their streams end.
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
            ]
        )
        self._register(server)
        try:
            with _core_log_silenced():
                if self.tls is None:
                    server.add_insecure_port(self.address)
                else:
                    credentials = grpc.ssl_server_credentials([self.tls])
                    server.add_secure_port(self.address, credentials)
        except RuntimeError:
            raise Unavailable(
                f"cannot listen for gRPC on {self.address}: the port is in use"
                " or the address is not this machine's"
            ) from None
        self._server = server
        return server

    def _register(self, server: grpc.aio.Server) -> None:
        add_servicer(self._servicer, server)

    def begin_stop(self, grace_s: float) -> None:
        """Stop taking RPCs now; those in flight get up to ``grace_s`` to finish."""
        if self._stopping is None:
            self._servicer.stopping.set()
            self._stopping = asyncio.get_running_loop().create_task(self._stop(grace_s))

    async def stop(self, grace_s: float) -> None:
        """Stop (if not already stopping) and wait until every RPC has finished."""
        self.begin_stop(grace_s)
        assert self._stopping is not None
        await self._stopping

    async def _stop(self, grace_s: float) -> None:
        if self._server is not None:
            await self._server.stop(grace_s)
