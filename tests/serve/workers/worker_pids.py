"""The processes of a `--workers` server and the connections they hold, read from /proc
(the kernel's own account, nothing the server says about itself)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from aiaas.serve.workers.child import model_socket_name

ENGINE = "aiaas.serve.workers.engine_process"
FRONT_END = "aiaas.serve.workers.frontend"
MODEL_ENGINE = "aiaas.serve.workers.model_engine"


def _parent_of(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def children(supervisor: int, module: str) -> list[int]:
    """Live (not zombie) children of ``supervisor`` running ``module``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent_of(entry) == supervisor and module in _cmdline(int(entry)):
            found.append(int(entry))
    return sorted(found)


def alive(pid: int) -> bool:
    """Running, not a zombie (a killed child its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll until ``condition()`` holds; the deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")
        time.sleep(0.1)


def _socket_inodes(port: int) -> set[str]:
    """Inodes of established TCP connections whose local end is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    return inodes


def held_sockets(pid: int) -> list[str]:
    """The inodes of the sockets ``pid`` has open, one per descriptor."""
    inodes = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(target[8:-1])
    return inodes


def connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """How many accepted connections on ``port`` each process holds."""
    inodes = _socket_inodes(port)
    return {pid: sum(inode in inodes for inode in held_sockets(pid)) for pid in pids}


def unix_socket_paths(pid: int) -> list[Path]:
    """The paths of the Unix sockets ``pid`` holds with a name (the kernel's account)."""
    held = set(held_sockets(pid))
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in held and fields[7].startswith("/"):
            paths.append(Path(fields[7]))
    return paths


def model_engine(engine: int, model: str) -> int:
    """The process the engine started for ``model``: the one listening where the
    model's infer calls go."""
    socket_name = model_socket_name(model)
    for pid in children(engine, MODEL_ENGINE):
        if any(path.name == socket_name for path in unix_socket_paths(pid)):
            return pid
    raise AssertionError(f"no engine process of model {model!r} among the engine's children")


def all_serving(server) -> object:
    """Wait until every front end serves (the supervisor says so once they all reported
    ready; the server answers as soon as the first one does)."""
    wait_for(lambda: SERVING in server.logs(), "every front end to serve")
    return server


SERVING = "front-end processes beside one engine process"
