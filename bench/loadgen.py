"""Closed-loop HTTP load with wrk (C, so the load generator does not eat the
server's CPU the way a Python client would), and the processes under test."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
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


def run_h2load(
    url: str, body: Path, concurrency: int, seconds: float, headers: dict[str, str], log: Path
) -> LoadResult:
    """Closed-loop HTTP/2 load (gRPC is HTTP/2 POSTs of framed protobuf): one connection
    per client, one stream each. Percentiles come from h2load's per-request log.

    h2load sees HTTP statuses only; a gRPC error travels in the trailers of a 200, so
    callers check one real answer with a gRPC client before measuring."""
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is not installed: apt-get install -y nghttp2-client")
    log.unlink(missing_ok=True)  # h2load appends to its log
    command = ["h2load", "-c", str(concurrency), "-m", "1", "-D", str(max(1, round(seconds))),
               "-d", str(body), f"--log-file={log}", url]  # fmt: skip
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    subprocess.run(command, capture_output=True, text=True, check=True)
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    latencies = sorted(int(row[2]) / 1000 for row in rows)
    errors = sum(1 for row in rows if row[1] != "200")
    if not latencies:
        raise RuntimeError(f"h2load made no requests to {url}")
    # h2load runs longer than -D (connection set-up, warm-up): rate over the logged span.
    started = [int(row[0]) for row in rows]
    span_s = (max(started) - min(started)) / 1e6 + latencies[len(latencies) // 2] / 1000
    return LoadResult(
        len(rows) / span_s,
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        errors,
    )


def _percentile(out: str, label: str) -> float:
    match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def serve_command(
    repo: Path, port: int, grpc_port: int, extra: list[str] | tuple[str, ...] = (),
    tree: Path | None = None,
) -> list[str]:  # fmt: skip
    """`aiaas serve` of this checkout, or of another code tree (a worktree, or `git archive`
    of a commit: a directory holding an `aiaas` package) to measure it beside this one."""
    where = [] if tree is None else ["env", "-C", str(tree), f"PYTHONPATH={tree}"]
    # In the tree's directory: `python -m` puts the working directory first on the path.
    return [
        *where, sys.executable, "-m", "aiaas.cli", "serve", "--model-repository", str(repo),
        "--http-port", str(port), "--grpc-port", str(grpc_port), "--log-level", "warning",
        *extra,
    ]  # fmt: skip


def parse_trees(values: list[str], this_checkout: Path) -> dict[str, Path]:
    """`--tree LABEL=PATH` options; none: this checkout alone."""
    if not values:
        return {"this checkout": this_checkout}
    trees = {}
    for value in values:
        label, _, path = value.partition("=")
        if not path or not (Path(path) / "aiaas").is_dir():
            raise SystemExit(f"--tree wants LABEL=PATH with an aiaas package under PATH: {value}")
        trees[label] = Path(path).resolve()
    return trees


class Process:
    """A server under test, started and stopped by PID."""

    def __init__(self, command: list[str], health_url: str, log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited: see {log}")
            if _answers(health_url):
                return
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


def _answers(url: str) -> bool:
    """An HTTP health URL answers, or (tcp://HOST:PORT) the port accepts connections."""
    if url.startswith("tcp://"):
        host, _, port = url.removeprefix("tcp://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return False
        return True
    try:
        return httpx.get(url, timeout=1).status_code in (200, 405)
    except httpx.HTTPError:
        return False
