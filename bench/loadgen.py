"""Closed-loop HTTP load with wrk (C, so the load generator does not eat the
server's CPU the way a Python client would), and the processes under test."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
{extra_headers}
local f = io.open("{body_path}", "rb")
wrk.body = f:read("*all")
f:close()
"""


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench does this)")
    return path


def write_script(
    work: Path, name: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> Path:
    body_path = work / f"{name}.body"
    body_path.write_bytes(body)
    extra = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
    script = work / f"{name}.lua"
    script.write_text(
        _LUA.format(content_type=content_type, extra_headers=extra, body_path=body_path)
    )
    return script


def run_wrk(url: str, script: Path, concurrency: int, seconds: float) -> LoadResult:
    command = [
        require_wrk(), "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
        "--timeout", "30s",
        "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?timeout (\d+)"):
        match = re.search(pattern, out)
        errors += int(match.group(1)) if match else 0
    return LoadResult(rate, _percentile(out, "50%"), _percentile(out, "99%"), errors)


def _percentile(out: str, label: str) -> float:
    match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


class Process:
    """A server under test, started and stopped by PID."""

    def __init__(self, command: list[str], health_url: str, log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited: see {log}")
            try:
                if httpx.get(health_url, timeout=1).status_code in (200, 405):
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{command[:3]} did not come up: see {log}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def v2_json_body(inputs: dict[str, tuple[str, list[int], list]]) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": name, "datatype": datatype, "shape": shape, "data": data}
                for name, (datatype, shape, data) in inputs.items()
            ]
        }
    ).encode()
