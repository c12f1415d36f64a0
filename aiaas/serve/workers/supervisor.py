"""`aiaas serve --workers N`: the process the user started. It holds the public ports,
starts one engine process and, once the engine is live, N front-end processes; it
replaces a front end that dies and restarts an engine that dies (the front ends answer
503 / UNAVAILABLE meanwhile); on SIGTERM or Ctrl-C the front ends drain first, then the
engine, and it exits 0 with its private directory removed.

It stays thin (no models, no onnxruntime, no HTTP): whatever it cannot do, a child
does, and a child's failure before serving reaches the user as the one line a single
process would print.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiaas.errors import AiaasError, Unavailable, cannot_listen
from aiaas.serve import race
from aiaas.serve.logs import configure_logging
from aiaas.serve.settings import ServerSettings
from aiaas.serve.workers import child
from aiaas.serve.workers.processes import WorkerProcess

log = logging.getLogger("aiaas.serve.workers")

#: Beyond the shutdown timeout, how long a child may take to exit before it is killed.
_EXIT_MARGIN_S = 10.0


#: The longest path a Unix socket may have (Linux's ``sun_path``, less its final NUL).
_SOCKET_PATH_MAX = 107


def private_dir() -> Path:
    """A new directory only this user can enter (mode 0700) for the engine's sockets:
    under $TMPDIR, or under /tmp where $TMPDIR is too deep for a socket's path to fit."""
    names = [path.name for path in child.engine_files(Path())] + [child.model_socket_name("")]
    longest = max(len(name) for name in names)
    for parent in (None, "/tmp"):
        folder = Path(tempfile.mkdtemp(prefix="aiaas-serve-", dir=parent))
        if len(str(folder).encode()) + 1 + longest <= _SOCKET_PATH_MAX:
            return folder
        folder.rmdir()
    raise Unavailable("no temporary directory short enough for the engine's sockets")


def supervise(settings: ServerSettings) -> None:
    """Serve until a signal; an AiaasError before serving (a port in use, a model that
    cannot be resolved) is raised for the command to print."""
    configure_logging(settings, "supervisor")
    asyncio.run(Supervisor(settings).run())


class PortHolds:
    """The public ports, held by this process for as long as it runs: bound with
    SO_REUSEPORT but never listening (so the kernel gives it no connection), they keep
    any other server off while front ends come and go. A port another server holds is
    found first by binding without SO_REUSEPORT: a second aiaas must not share it."""

    def __init__(self, settings: ServerSettings) -> None:
        host = settings.host
        self.sockets: list[socket.socket] = []
        try:
            self.http_port = self._hold(host, settings.http_port, "HTTP", f"{host}:{{}}")
            self.grpc_port = 0
            if settings.grpc_port:
                shown = f"[{host}]:{{}}" if ":" in host else f"{host}:{{}}"
                self.grpc_port = self._hold(host, settings.grpc_port, "gRPC", shown)
            if settings.metrics_port:  # the engine listens there itself; free it must be
                _probe(host, settings.metrics_port, "metrics", f"{host}:{{}}").close()
        except BaseException:
            self.close()
            raise

    def _hold(self, host: str, port: int, what: str, shown: str) -> int:
        probe = _probe(host, port, what, shown)
        port = probe.getsockname()[1]
        probe.close()
        held = socket.socket(_family(host), socket.SOCK_STREAM)
        self.sockets.append(held)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if held.family == socket.AF_INET6:  # as socket.create_server binds the front ends'
            held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            held.bind((host, port))
        except OSError as error:
            raise cannot_listen(what, shown.format(port), error) from None
        return int(port)

    def close(self) -> None:
        for held in self.sockets:
            held.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _probe(host: str, port: int, what: str, shown: str) -> socket.socket:
    try:
        return socket.create_server((host, port), family=_family(host))
    except OSError as error:
        raise cannot_listen(what, shown.format(port), error) from None


@dataclass
class Slot:
    """One place for a child: the engine, or front end i. Its process is replaced when
    it dies."""

    role: str
    module: str
    config: Callable[[int], child.ChildConfig]
    process: WorkerProcess | None = None

    async def start(self) -> None:
        """Start a process here and wait until it serves; raises what stopped it."""
        self.process = WorkerProcess.start(self.role, self.module, self.config)
        await self.process.ready()

    async def stop(self, grace_s: float) -> None:
        if self.process is not None and not self.process.has_exited:
            await self.process.stop(grace_s)

    async def kill(self) -> None:
        if self.process is not None and not self.process.has_exited:
            self.process.signal(signal.SIGKILL)
            await self.process.wait()


class Supervisor:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.slots: list[Slot] = []
        self._stopping: asyncio.Event | None = None

    @property
    def stopping(self) -> asyncio.Event:
        assert self._stopping is not None
        return self._stopping

    async def run(self) -> None:
        self._stopping = asyncio.Event()
        ports = PortHolds(self.settings)
        run_dir = private_dir()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            self.slots = self._slots(ports, run_dir)
            if await self._start_all():
                log.info(
                    "serving HTTP on %s:%d with %d front-end processes beside one engine process",
                    self.settings.host, ports.http_port, self.settings.workers,
                )  # fmt: skip
                await self._keep_all()
            await self._drain()
        finally:
            await asyncio.gather(*(slot.kill() for slot in self.slots))  # left by an error
            ports.close()
            shutil.rmtree(run_dir, ignore_errors=True)

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.stopping.is_set():
            log.info("received %s: the front ends finish their requests, then the engine", sig.name)
        self.stopping.set()

    def _slots(self, ports: PortHolds, run_dir: Path) -> list[Slot]:
        def config(index: int) -> Callable[[int], child.ChildConfig]:
            return lambda fd: child.ChildConfig(
                self.settings, run_dir, fd, index, ports.http_port, ports.grpc_port
            )

        engine = Slot("engine", child.ENGINE_MODULE, config(0))
        front_ends = [
            Slot(f"front end {index}", child.FRONT_END_MODULE, config(index))
            for index in range(1, self.settings.workers + 1)
        ]
        return [engine, *front_ends]

    async def _start_all(self) -> bool:
        """The engine, once it is live the front ends; False when a signal came first."""
        engine, *front_ends = self.slots
        if not await self._unless_stopped(engine.start()):
            return False
        return await self._unless_stopped(asyncio.gather(*(slot.start() for slot in front_ends)))

    async def _unless_stopped(self, starting: Awaitable[object]) -> bool:
        """Whether ``starting`` finished before a signal (raises what stopped a child)."""
        try:
            await race.unless(starting, self.stopping.wait())
        except race.Interrupted:
            return False
        return True

    async def _keep_all(self) -> None:
        keepers = [asyncio.create_task(self._keep(slot)) for slot in self.slots]
        await self.stopping.wait()
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)

    async def _keep(self, slot: Slot) -> None:
        """Replace the slot's process each time it dies, until the server stops."""
        delay = 0.0
        while True:
            assert slot.process is not None
            code = await slot.process.wait()
            delay = slot.process.restart_delay(delay)
            log.warning(
                "the %s process (pid %d) exited with code %d: starting a new one",
                slot.role, slot.process.pid, code,
            )  # fmt: skip
            await asyncio.sleep(delay)
            try:
                await slot.start()
            except AiaasError as error:
                log.error("a new %s process could not start: %s", slot.role, error)

    async def _drain(self) -> None:
        """Front ends first (they finish what they answer, which may need the engine),
        then the engine."""
        grace_s = self.settings.shutdown_timeout_s + _EXIT_MARGIN_S
        engine, *front_ends = self.slots
        await asyncio.gather(*(slot.stop(grace_s) for slot in front_ends))
        await engine.stop(grace_s)
