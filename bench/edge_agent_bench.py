"""Edge agent: the time from an alias move to the device answering with the new version.

A registry server (`aiaas serve --registry-uri`, SQLite) and one `aiaas edge agent`
following `models:/NAME@production` over HTTP at each poll interval. Each version
answers y = x + its number, so the answer says which version computed it. Moves happen
at a random phase of the poll cycle. The baseline, measured in the same run: `aiaas
serve --model models:/NAME@production` following the same kind of registry straight
from its database (bench/registry_bench.py's measurement). Target: < 2 x the interval.

Usage: python -m bench edge-agent [--moves 7] [--poll-secs 0.5 1.0]
Prints the table and writes bench/results/edge_agent.md.
"""

from __future__ import annotations

import argparse
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
import models  # noqa: E402  (tests/models.py: small ONNX graphs built in code)
import onnx  # noqa: E402

from aiaas.registry import Registry  # noqa: E402
from bench.loadgen import Process, free_port  # noqa: E402
from bench.registry_bench import alias_move_seconds  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "edge_agent.md"
MODEL = "bench-edge"
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]}


def agent_move_seconds(work: Path, moves: int, poll_secs: float) -> list[float]:
    """Per move: from `set_alias` returning to the device's first answer by the new version."""
    work.mkdir(parents=True)
    uri, root = f"sqlite:///{work / 'registry.db'}", str(work / "artifacts")
    (work / "empty").mkdir()
    with Registry.open(uri, root) as registry:
        for number in range(1, moves + 2):
            path = work / f"v{number}.onnx"
            onnx.save(models.add_constant(number), path)
            registry.register(MODEL, path)
        registry.set_alias(MODEL, "production", 1)
        registry_port, agent_port = free_port(), free_port()
        registry_url = f"http://127.0.0.1:{registry_port}"
        server_command = [
            sys.executable, "-m", "aiaas.cli", "serve", "--http-port", str(registry_port),
            "--grpc-port", "0", "--model-repository", str(work / "empty"),
            "--registry-uri", uri, "--artifact-root", root, "--log-level", "warning",
        ]  # fmt: skip
        agent_url = f"http://127.0.0.1:{agent_port}"
        agent_command = [
            sys.executable, "-m", "aiaas.cli", "edge", "agent",
            "--registry-url", registry_url, "--model", f"models:/{MODEL}@production",
            "--dir", str(work / "device"), "--http-port", str(agent_port),
            "--poll-secs", str(poll_secs), "--log-level", "warning",
        ]  # fmt: skip
        server = Process(server_command, f"{registry_url}/v2/registry/models", work / "reg.log")
        try:
            agent = Process(agent_command, f"{agent_url}/v2/health/live", work / "agent.log")
            try:
                _wait_version(agent_url, 1, time.perf_counter())
                return [
                    _one_move(registry, agent_url, number, poll_secs)
                    for number in range(2, moves + 2)
                ]
            finally:
                agent.stop()
        finally:
            server.stop()


def _one_move(registry: Registry, url: str, number: int, poll_secs: float) -> float:
    time.sleep(random.Random(number).uniform(0, poll_secs))
    registry.set_alias(MODEL, "production", number)
    return _wait_version(url, number, time.perf_counter())


def _wait_version(url: str, number: int, since: float) -> float:
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.perf_counter() - since < 120:
            response = client.post(f"/v2/models/{MODEL}/infer", json=BODY)
            if response.status_code == 200:
                answer = response.json()
                if (
                    answer["model_version"] == str(number)
                    and answer["outputs"][0]["data"][0] == number
                ):
                    return time.perf_counter() - since
            time.sleep(0.002)
    raise RuntimeError(f"the device never answered with version {number}")


def cpu_name() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def render(rows: list[tuple[float, list[float], list[float]]], moves: int) -> str:
    lines = [
        "## Edge agent: alias move to the device answering (issue 18)",
        "",
        f"`python -m bench edge-agent`, {moves} moves per interval, on {cpu_name()} "
        f"({platform.machine()}, shared 2-core machine). Registry: `aiaas serve --registry-uri` "
        "over SQLite; device: one `aiaas edge agent` on the same host (loopback HTTP).",
        "",
        "| poll interval | edge agent median ms | min | max | target (< 2 x interval) "
        "| baseline: `aiaas serve --model` median ms |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for poll_secs, agent_s, baseline_s in rows:
        ms = [value * 1000 for value in agent_s]
        median = statistics.median(ms)
        met = "met" if median < 2 * poll_secs * 1000 else "missed"
        baseline = statistics.median(baseline_s) * 1000
        lines.append(
            f"| {poll_secs * 1000:,.0f} ms | {median:,.0f} | {min(ms):,.0f} | {max(ms):,.0f} "
            f"| {met} ({2 * poll_secs * 1000:,.0f} ms) | {baseline:,.0f} |"
        )
    lines += [
        "",
        "- Measured from `set_alias` returning until an infer request to the device is answered",
        "  by the new version (the client retries every 2 ms). It is the wait for the next poll",
        "  (half the interval on average: moves land at a random phase) plus one conditional",
        "  alias read, the download over HTTP, the sha256 checks, the sample inference in a",
        "  fresh ONNX Runtime session, two renames and the server's load of the new version.",
        "- Polls of an unmoved alias are answered 304 with no body; the device never stops",
        "  answering during a swap (the old version serves until the new one is loaded).",
        "- The baseline follows the registry's database directly (no HTTP, no sample check).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=7)
    parser.add_argument("--poll-secs", type=float, nargs="+", default=[0.5, 1.0])
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aiaas-edge-agent-bench-"))
    rows = []
    try:
        for poll_secs in args.poll_secs:
            agent_s = agent_move_seconds(work / f"agent-{poll_secs}", args.moves, poll_secs)
            baseline_s = alias_move_seconds(work / f"serve-{poll_secs}", args.moves, poll_secs)
            rows.append((poll_secs, agent_s, baseline_s))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = render(rows, args.moves)
    print(section)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(section)


if __name__ == "__main__":
    main()
