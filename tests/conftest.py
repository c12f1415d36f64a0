"""Shared fixtures: real servers in subprocesses on free ports of 127.0.0.1.

Tests never import aiaas's gRPC modules in this process: they define protobuf
symbols in Triton's `inference` package, as tritonclient's do, and protobuf
refuses two definitions of one symbol in one process.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from ports import free_port
from processes import LoggedProcess, server_env
from xdist_schedule import longest_first, make_scheduler


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    return make_scheduler(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a plain run keeps pytest's order
        longest_first(items)


class ServerProcess(LoggedProcess):
    """`aiaas serve` in a subprocess, with its log kept for assertions."""

    def __init__(
        self,
        repo: Path | None,
        *args: str,
        log_path: Path,
        wait_ready: bool = True,
        preexec_fn: Callable[[], None] | None = None,
        ports: tuple[int, int] | None = None,
    ) -> None:
        self.http_port, self.grpc_port = ports or (free_port(), free_port())
        self.url = f"http://127.0.0.1:{self.http_port}"
        command = [
            sys.executable, "-m", "aiaas.cli", "serve",
            *(["--model-repository", str(repo)] if repo is not None else []),
            "--http-port", str(self.http_port),
            *self._grpc_args(args),
            *args,
        ]  # fmt: skip
        log_path.unlink(missing_ok=True)
        super().__init__(command, log_path, env=server_env(), preexec_fn=preexec_fn)
        self._wait(wait_ready)

    def _grpc_args(self, args: tuple[str, ...]) -> list[str]:
        if "--grpc-port" in args:
            return []
        return ["--grpc-port", str(self.grpc_port)]

    def _wait(self, ready: bool) -> None:
        path = "/v2/health/ready" if ready else "/v2/health/live"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not up after 60 s:\n{self.logs()}")


@pytest.fixture
def start_workers(request: pytest.FixtureRequest) -> int:
    """`--workers` of the servers a test starts (1 unless it is marked ``both_workers``)."""
    return int(getattr(request, "param", 1))


@pytest.fixture
def start_server(tmp_path: Path, start_workers: int) -> Iterator:
    """Factory: start_server(repo or None, *flags, preexec_fn=None, ports=None) ->
    ServerProcess, stopped at teardown; preexec_fn runs in the child before exec (resource
    limits); ports=(http, grpc) restarts a server where a killed one listened."""
    started: list[ServerProcess] = []

    def start(
        repo: Path | None,
        *args: str,
        wait_ready: bool = True,
        preexec_fn: Callable[[], None] | None = None,
        ports: tuple[int, int] | None = None,
    ) -> ServerProcess:
        if start_workers != 1 and "--workers" not in args:
            args = (*args, "--workers", str(start_workers))
        server = ServerProcess(
            repo,
            *args,
            log_path=tmp_path / f"server-{len(started)}.log",
            wait_ready=wait_ready,
            preexec_fn=preexec_fn,
            ports=ports,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module (or test) marked ``both_workers`` runs twice: its servers as one process,
    then as `--workers 2` (two front ends beside an engine), which must answer the same.
    A module server is started once for each; a test's own servers once a run."""
    if not metafunc.definition.get_closest_marker("both_workers"):
        return
    if "module_server" in metafunc.fixturenames:
        metafunc.parametrize(
            "server_workers", [1, 2], indirect=True, scope="module", ids=["one", "workers2"]
        )
    elif "start_server" in metafunc.fixturenames:
        metafunc.parametrize("start_workers", [1, 2], indirect=True, ids=["one", "workers2"])


@pytest.fixture(scope="module")
def server_workers(request: pytest.FixtureRequest) -> int:
    """The module server's `--workers` (1 unless the module is marked ``both_workers``)."""
    return int(getattr(request, "param", 1))


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Path:
    """A folder per module (and per `--workers` count where the module runs under both)."""
    return tmp_path_factory.mktemp("module" if server_workers == 1 else "module-workers2")


@pytest.fixture(scope="module")
def module_server(module_tmp: Path, server_workers: int) -> Iterator:
    """Factory for one server per test module."""
    started: list[ServerProcess] = []

    def start(repo: Path, *args: str) -> ServerProcess:
        if server_workers != 1 and "--workers" not in args:
            args = (*args, "--workers", str(server_workers))
        log_path = module_tmp / f"server-w{server_workers}-{len(started)}.log"
        server = ServerProcess(repo, *args, log_path=log_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def shm_regions() -> Iterator:
    """make(byte_size) -> (name, key, handle): POSIX regions made as a Triton client
    makes them (tritonclient.utils.shared_memory), destroyed afterwards."""
    import uuid

    import tritonclient.utils.shared_memory as shm

    made = []

    def make(byte_size: int) -> tuple[str, str, object]:
        name = f"r{uuid.uuid4().hex[:8]}"
        handle = shm.create_shared_memory_region(name, f"/aiaas_test_{name}", byte_size)
        made.append(handle)
        return name, f"/aiaas_test_{name}", handle

    yield make
    for handle in made:
        shm.destroy_shared_memory_region(handle)
