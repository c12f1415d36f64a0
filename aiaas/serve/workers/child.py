"""How the supervisor of `aiaas serve --workers N` and its children talk: a child is
`python -m <module>` that reads its settings as JSON on stdin (never argv or the
environment, where a token would show in `ps`), and writes one status line (ready, or
the error that stopped it) to a pipe, so that a failure before serving is the same one
line and exit code as in one process.

Children die with their parent (PR_SET_PDEATHSIG, which each sets itself, checked
against a race with getppid) and sit in their own process group, so that a Ctrl-C in
the terminal reaches the supervisor alone and it decides the order of shutdown.
Imports nothing heavy: the supervisor imports it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiaas.errors import AiaasError, decode_error, encode_error
from aiaas.serve.settings import ServerSettings

ENGINE_MODULE = "aiaas.serve.workers.engine_process"
FRONT_END_MODULE = "aiaas.serve.workers.frontend"
MODEL_ENGINE_MODULE = "aiaas.serve.workers.model_engine"
_PR_SET_PDEATHSIG = 1


def engine_http_path(run_dir: Path) -> Path:
    """The engine's HTTP app, for the front ends' passthrough."""
    return run_dir / "engine-http.sock"


def engine_grpc_address(run_dir: Path) -> str:
    return f"unix:{run_dir / 'engine-grpc.sock'}"


def engine_hop_address(run_dir: Path) -> str:
    """The engine's EngineService (a Unix socket), for the front ends' infer calls."""
    return f"ipc://{run_dir / 'engine-hop.ipc'}"


def model_hop_address(run_dir: Path, model: str) -> str:
    """The EngineService of one model's engine process."""
    return f"ipc://{run_dir / model_socket_name(model)}"


def model_socket_name(model: str) -> str:
    """Named after a digest of the model's name, which may be long or hold any
    character, and the same in every process that asks, so a route never needs telling
    again."""
    return f"model-{hashlib.sha256(model.encode()).hexdigest()[:16]}.ipc"


def engine_files(run_dir: Path) -> list[Path]:
    """What a killed engine leaves behind and its successor must bind afresh."""
    return [
        engine_http_path(run_dir),
        run_dir / "engine-grpc.sock",
        run_dir / "engine-hop.ipc",
    ]


@dataclass(frozen=True)
class ChildConfig:
    """What a child is told: the server's settings and where it fits."""

    settings: ServerSettings
    run_dir: Path
    status_fd: int
    index: int = 0
    http_port: int = 0
    grpc_port: int = 0
    #: The model a model engine process serves.
    model: str = ""
    #: The process that started it, which it must not outlive.
    parent_pid: int = field(default_factory=os.getpid)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "settings": self.settings.model_dump(mode="json"),
                "run_dir": str(self.run_dir),
                "status_fd": self.status_fd,
                "index": self.index,
                "http_port": self.http_port,
                "grpc_port": self.grpc_port,
                "model": self.model,
                "parent_pid": self.parent_pid,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ChildConfig:
        data = json.loads(raw)
        return cls(
            settings=ServerSettings(**data["settings"]),
            run_dir=Path(data["run_dir"]),
            status_fd=int(data["status_fd"]),
            index=int(data["index"]),
            http_port=int(data["http_port"]),
            grpc_port=int(data["grpc_port"]),
            model=str(data["model"]),
            parent_pid=int(data["parent_pid"]),
        )


# ---- the supervisor's side ------------------------------------------------------------


def spawn(module: str, config: ChildConfig, write_fd: int) -> subprocess.Popen[bytes]:
    """Start ``module`` as a child that dies with this process; the config goes on its
    stdin, ``write_fd`` (the status pipe's end) is the only descriptor it inherits.

    No code runs between fork and exec (so Python may vfork): a process with gRPC's
    threads, as the engine process is, cannot fork safely otherwise. The child ties its
    life to this one itself (``read_config``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", module], stdin=subprocess.PIPE, pass_fds=(write_fd,), process_group=0
    )
    assert process.stdin is not None
    try:
        process.stdin.write(config.to_json())
        process.stdin.close()
    except BrokenPipeError:  # it died at once; its exit is reported as any other
        pass
    return process


def _die_with(parent: int) -> None:
    """A SIGKILLed parent takes this process with it; one already gone ends it now."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != parent:
        os._exit(1)


def parse_status(line: bytes) -> AiaasError | None:
    """None for "ready"; the child's error, as the same kind, otherwise."""
    try:
        status = json.loads(line)
    except ValueError:
        return AiaasError(f"a worker process said {line[:200]!r} instead of its status")
    if status.get("ready"):
        return None
    # The same class as the child's (or the one of ours it extends), so that the command's
    # exit code is the one a single process gives.
    return decode_error(status.get("error"))


# ---- the child's side -----------------------------------------------------------------


def read_config() -> ChildConfig:
    """The config from the parent, once this process is bound to die with it."""
    config = ChildConfig.from_json(sys.stdin.buffer.read())
    _die_with(config.parent_pid)
    return config


class Status:
    """The child's one report to its supervisor."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def ready(self) -> None:
        self._send({"ready": True})

    def failed(self, error: AiaasError) -> None:
        self._send({"error": encode_error(error)})

    def _send(self, status: dict[str, Any]) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # the supervisor is gone: nobody to tell
            os.write(self._fd, json.dumps(status).encode() + b"\n")
        os.close(self._fd)
        self._fd = None


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run a child's main coroutine on uvloop, as the single-process server does."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        import asyncio

        asyncio.run(main)
        return
    uvloop.run(main)
