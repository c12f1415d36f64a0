"""Restart after SIGKILL: how long a server killed under load takes to be ready again
on the same ports, serving the example MLP repository or an MLP from the registry.

Each round starts `aiaas serve`, sends MLP requests from a few client threads, kills
the server with SIGKILL mid-load and starts it again with the same flags (same ports,
same registry cache); the figure is the time from the restart's spawn to its first
200 on /v2/health/ready (Python's start and imports included), with the first start
of the round as the baseline. Needs examples/model_repository (`make setup`); its
language model is left out.

Usage: python -m bench faults [--rounds 5]
Prints the table and writes it to bench/results/faults.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "model_repository"
RESULTS = ROOT / "bench" / "results" / "faults.md"
sys.path[:0] = [str(ROOT)]

from bench.loadgen import free_port  # noqa: E402


def start(flags: list[str], http: int, grpc: int, log: Path) -> tuple[subprocess.Popen, float]:
    """Spawn the server; return it and the seconds until /v2/health/ready answered 200."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "aiaas.cli", "serve", "--http-port", str(http),
               "--grpc-port", str(grpc), *flags]  # fmt: skip
    began = time.perf_counter()
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{http}/v2/health/ready"
    while time.perf_counter() - began < 120:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: see {log}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process, time.perf_counter() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    process.kill()
    raise RuntimeError(f"server not ready after 120 s: see {log}")


def load(url: str, stop: threading.Event, answered: list[int]) -> None:
    body = {"inputs": [{"name": "input", "shape": [4, 64], "datatype": "FP32",
                        "data": np.random.default_rng(0).random(256).tolist()}]}  # fmt: skip
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            try:
                if client.post(url, json=body).status_code == 200:
                    answered[0] += 1
            except httpx.HTTPError:
                stop.wait(0.01)


def one_round(flags: list[str], model: str, log: Path) -> tuple[float, float]:
    http, grpc = free_port(), free_port()
    first, cold = start(flags, http, grpc, log)
    stop, answered = threading.Event(), [0]
    url = f"http://127.0.0.1:{http}/v2/models/{model}/infer"
    threads = [threading.Thread(target=load, args=(url, stop, answered)) for _ in range(3)]
    for thread in threads:
        thread.start()
    while answered[0] < 50:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second, restart = start(flags, http, grpc, log)
    stop.set()
    for thread in threads:
        thread.join()
    second.send_signal(signal.SIGTERM)
    second.wait(30)
    return cold, restart


def registry_flags(work: Path) -> list[str]:
    from aiaas.registry import Registry

    uri, artifacts = f"sqlite:///{work / 'registry.db'}", str(work / "artifacts")
    with Registry.open(uri, artifacts) as registry:
        registry.register("mlp", EXAMPLES / "mlp" / "1" / "model.onnx")
        registry.set_alias("mlp", "production", 1)
    cache = str(work / "cache")
    return ["--registry-uri", uri, "--artifact-root", artifacts,
            "--model", "models:/mlp@production", "--registry-cache-dir", cache]  # fmt: skip


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(rows: dict[str, list[tuple[float, float]]]) -> str:
    lines = ["| served from | first start, median | restart after SIGKILL: median | min | max |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, timings in rows.items():
        colds, restarts = [c for c, _ in timings], [r for _, r in timings]
        lines.append(
            f"| {name} | {statistics.median(colds):.2f} s | {statistics.median(restarts):.2f} s "
            f"| {min(restarts):.2f} s | {max(restarts):.2f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench faults")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if not (EXAMPLES / "mlp").is_dir():
        sys.exit("examples/model_repository/mlp is missing: run `make setup` first")
    work = Path(tempfile.mkdtemp(prefix="aiaas-faults-bench-"))
    try:
        repo = work / "repo"
        for model in ("mlp", "add_sub"):
            shutil.copytree(EXAMPLES / model, repo / model)
        log = work / "server.log"
        rows = {
            "example repository (mlp, add_sub)": [
                one_round(["--model-repository", str(repo)], "mlp", log) for _ in range(args.rounds)
            ],
            "registry (models:/mlp@production, SQLite)": [],
        }
        flags = registry_flags(work)
        for _ in range(args.rounds):
            rows["registry (models:/mlp@production, SQLite)"].append(one_round(flags, "mlp", log))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = (
        f"# Restart after SIGKILL under load\n\n{table(rows)}\n\n"
        f"{args.rounds} rounds each; CPU: {cpu_name()} ({os.cpu_count()} cores, shared "
        "with other work); time from spawn to the first 200 on /v2/health/ready. The registry's "
        "cache is kept across rounds, so only its first start downloads the version.\n"
    )
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
