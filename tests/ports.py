"""Free TCP ports on 127.0.0.1 for the servers the tests start.

A port is free when this process can bind it; the server binds it a moment later. In one
pytest process the kernel's choice (bind to port 0) is enough. Under pytest-xdist two
workers ask at once, and the kernel may hand both the same port in that moment, so each
worker draws from a range of its own, below the kernel's ephemeral range (where no
client's outgoing connection lands either), and never hands out one port twice.
"""

from __future__ import annotations

import os
import random
import socket

#: Below Linux's default ephemeral range (32768-60999), above the well-known services.
WORKER_PORTS = range(10_000, 32_000)
_handed_out: set[int] = set()
_draw = random.SystemRandom()  # a test seeding `random` must not make workers draw alike


def free_port() -> int:
    own = worker_ports()
    if own is None:
        return _bind(0)
    for _ in range(1000):
        port = _draw.choice(own)
        if port not in _handed_out:
            try:
                _bind(port)
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {own}")


def worker_ports() -> range | None:
    """This xdist worker's slice of WORKER_PORTS; None outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
    if worker is None:
        return None
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    width = len(WORKER_PORTS) // count
    start = WORKER_PORTS.start + int(worker.removeprefix("gw")) * width
    return range(start, start + width)


def _bind(port: int) -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        return int(sock.getsockname()[1])
