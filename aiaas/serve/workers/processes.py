"""One child of the supervisor as the supervisor sees it: started, ready (or the error
that stopped it), exited, stopped gracefully within a bound. Its exit is watched through
a pidfd on the event loop, so a dead child is noticed at once without polling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

from aiaas.errors import AiaasError
from aiaas.serve.workers import child

#: A child that lived this long before dying is started again at once; one that dies
#: sooner waits a growing delay, so a child that cannot start does not spin the machine.
_STABLE_S = 10.0
_FIRST_DELAY_S, _MAX_DELAY_S = 0.25, 10.0


class WorkerProcess:
    def __init__(self, role: str, process: subprocess.Popen[bytes], status_fd: int) -> None:
        self.role = role
        self.process = process
        self.started_at = time.monotonic()
        self._status_fd = status_fd
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        self._pidfd = os.pidfd_open(process.pid)
        loop.add_reader(self._pidfd, self._reap)

    @classmethod
    def start(
        cls, role: str, module: str, config: Callable[[int], child.ChildConfig]
    ) -> WorkerProcess:
        """``config`` is given the child's end of the status pipe."""
        read_fd, write_fd = os.pipe()
        try:
            process = child.spawn(module, config(write_fd), write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return cls(role, process, read_fd)

    def restart_delay(self, previous_s: float) -> float:
        """How long to wait before starting its successor, now that it has died, given
        the wait before it (0 for a first start)."""
        if time.monotonic() - self.started_at >= _STABLE_S:
            return 0.0
        return min(max(2 * previous_s, _FIRST_DELAY_S), _MAX_DELAY_S)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def has_exited(self) -> bool:
        return self._exited.done()

    async def wait(self) -> int:
        """Its exit code; shielded, so that a waiter cancelled leaves it to the others."""
        return await asyncio.shield(self._exited)

    def _reap(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._exited.set_result(self.process.wait())

    async def ready(self) -> None:
        """Wait for the child's status line: ready, or raise the error it reported."""
        reader = asyncio.StreamReader()
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self._status_fd, "rb", 0)
        )
        try:
            line = await reader.readline()
        finally:
            transport.close()
        if not line:
            code = await self.wait()
            raise AiaasError(
                f"the {self.role} process exited with code {code} before it was ready;"
                " its log lines above say why"
            )
        error = child.parse_status(line)
        if error is not None:
            await self.wait()
            raise error

    def signal(self, sig: signal.Signals) -> None:
        if not self.has_exited:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM: it finishes what it is answering and exits; killed after ``grace_s``."""
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), grace_s)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.wait()
