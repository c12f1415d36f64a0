"""uvicorn as aiaas runs it: the server class, its configuration with aiaas's HTTP bounds,
listening sockets, and the request limits from the settings.

Apart from ``server`` (which assembles the whole server of one process) so that a
`--workers` front-end process can use them without importing what it never runs: the
registry, the catalogue, the models and ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from aiaas.errors import cannot_listen
from aiaas.serve.limits import RequestLimits
from aiaas.serve.protocol.http_connection import bounded_protocol
from aiaas.serve.settings import ServerSettings

log = logging.getLogger("aiaas.serve")


class HttpServer(uvicorn.Server):
    """uvicorn's server, but a signal means a clean exit 0 rather than being re-raised;
    ``on_started`` runs once it listens (a `--workers` child tells its supervisor)."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_signal: Callable[[], None],
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.on_signal = on_signal
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.on_started is not None and not self.should_exit:
            self.on_started()

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
        self.on_signal()


def http_config(
    settings: ServerSettings, app: Any, *, tls: bool = True, **where: Any
) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` with the server's HTTP bounds; ``where`` says
    where it listens (host/port, or uds). ``tls=False`` for a private Unix socket."""
    return uvicorn.Config(
        app,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="none",
        http=bounded_protocol(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
        ),
        ssl_certfile=settings.tls_cert if tls else None,
        ssl_keyfile=settings.tls_key if tls else None,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        proxy_headers=False,
        server_header=False,
        **where,
    )


def request_limits(settings: ServerSettings) -> RequestLimits:
    return RequestLimits(
        max_tensor_elements=settings.max_tensor_elements,
        max_inputs=settings.max_inputs,
        max_bytes_element=settings.max_bytes_element,
        max_load_files=settings.max_load_files,
        max_load_file_bytes=settings.max_load_file_bytes,
        max_streams_per_client=settings.max_streams_per_client,
    )


def listen(host: str, port: int, what: str, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket, or `Unavailable` naming the port; ``reuse_port`` lets several
    processes listen on it (the `--workers` front ends)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server(
            (host, port), family=family, backlog=2048, reuse_port=reuse_port
        )
    except OSError as error:
        raise cannot_listen(what, f"{host}:{port}", error) from None
