"""Two models served side by side: what a busy model costs another one on the same server.

Usage: python -m bench models [--seconds 8] [--rounds 2] [--workers 1,2]
                              [--tree LABEL=PATH ...]
One server holds the MLP and MiniLM. The MLP is measured over gRPC (h2load) alone, then
while MiniLM is kept busy over REST binary (wrk, 8 clients) on the same server: at 64
clients (throughput) and at 1 (latency). Each `--workers` count of each code tree
(`--tree`, as in `grpc-percall`: the commit before a change beside this checkout) is a
server of its own; rounds interleave them. The ratio that matters is the MLP's rate
with MiniLM busy over its rate alone, on the same server in the same round. Writes
bench/results/models.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench import wire
from bench.loadgen import (
    LoadResult,
    Process,
    parse_trees,
    run_h2load,
    run_wrk,
    write_script,
)
from bench.serve_bench import (
    RESULTS,
    ROOT,
    WORK,
    check_grpc,
    cpu_name,
    prepare_minilm,
    prepare_mlp,
    start_aiaas,
)

#: MiniLM's load beside the MLP: enough clients to keep its batches full.
BUSY_CLIENTS = 8


@dataclass
class Point:
    mlp: LoadResult
    minilm: LoadResult | None = None


@dataclass
class Server:
    label: str
    process: Process
    port: int
    grpc_port: int


def start(label: str, tree: Path, repo: Path, workers: int) -> Server:
    log = WORK / f"models-{label.replace(' ', '-').replace(',', '')}.log"
    process, port, grpc_port = start_aiaas(repo, log, ("--workers", str(workers)), tree)
    return Server(label, process, port, grpc_port)


def measure(server: Server, mlp_body: Path, minilm_script: Path, seconds: float) -> dict:
    """The MLP at 64 and at 1 client, alone and with MiniLM busy."""
    grpc_url = f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer"
    minilm_url = f"http://127.0.0.1:{server.port}/v2/models/minilm/infer"
    log = WORK / "models-h2load.log"

    def mlp(clients: int) -> LoadResult:
        return run_h2load(grpc_url, mlp_body, clients, seconds, wire.GRPC_HEADERS, log)

    points = {}
    for clients in (64, 1):
        points[("alone", clients)] = Point(mlp(clients))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(run_wrk, minilm_url, minilm_script, BUSY_CLIENTS, seconds + 2)
            time.sleep(1.0)  # MiniLM's load is on before the MLP's starts, and ends after
            beside = mlp(clients)
            points[("busy", clients)] = Point(beside, busy.result())
    return points


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench models")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="aiaas's --workers counts to measure")
    parser.add_argument("--tree", action="append", default=[])
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    repo = WORK / "models-repo"
    mlp, minilm = prepare_mlp(repo), prepare_minilm(repo)
    mlp_body = WORK / "models-mlp.grpc"
    mlp_body.write_bytes(wire.grpc_body(mlp.name, mlp.feed(1)))
    body, header_length = wire.binary_body(minilm.feed(1), minilm.outputs)
    minilm_script = write_script(
        WORK, "models-minilm-binary", body, "application/octet-stream",
        {"Inference-Header-Content-Length": str(header_length)},
    )  # fmt: skip
    configs = [
        (f"{label}, workers {count}", tree, int(count))
        for label, tree in parse_trees(args.tree, ROOT).items()
        for count in args.workers.split(",")
    ]
    rounds: dict[str, list[dict]] = {label: [] for label, _, _ in configs}
    for index in range(args.rounds):
        for label, tree, count in configs:
            server = start(label, tree, repo, count)
            try:
                check_grpc(server.grpc_port, mlp)
                measure(server, mlp_body, minilm_script, 2.0)  # warm-up
                points = measure(server, mlp_body, minilm_script, args.seconds)
            finally:
                server.process.stop()
            rounds[label].append(points)
            show = ", ".join(
                f"{state} c={c}: {p.mlp.requests_per_s:.0f} req/s p50 {p.mlp.p50_ms:.2f} ms"
                for (state, c), p in points.items()
            )
            print(f"round {index + 1} {label}: {show}", flush=True)
    lines = report(rounds, args.seconds, args.rounds)
    (RESULTS / "models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def report(rounds: dict[str, list[dict]], seconds: float, count: int) -> list[str]:
    def median(label: str, key: tuple[str, int], field: str, model: str = "mlp") -> float:
        values = []
        for points in rounds[label]:
            result = getattr(points[key], model)
            values.append(getattr(result, field))
        return statistics.median(values)

    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores ({cpu_name()}), "
        f"{seconds:.0f} s a point, medians of {count} rounds. MLP over gRPC (h2load); "
        f"MiniLM kept busy over REST binary (wrk, {BUSY_CLIENTS} clients) on the same server.",
        "",
        "| server | MLP c=64 alone, req/s | MLP c=64, MiniLM busy | busy / alone"
        " | MiniLM req/s meanwhile | MLP c=1 p50 alone, ms | c=1 p50, MiniLM busy | p99 busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in rounds:
        alone = median(label, ("alone", 64), "requests_per_s")
        busy = median(label, ("busy", 64), "requests_per_s")
        lines.append(
            f"| {label} | {alone:.0f} | {busy:.0f} | {busy / alone:.2f}"
            f" | {median(label, ('busy', 64), 'requests_per_s', 'minilm'):.0f}"
            f" | {median(label, ('alone', 1), 'p50_ms'):.2f}"
            f" | {median(label, ('busy', 1), 'p50_ms'):.2f}"
            f" | {median(label, ('busy', 1), 'p99_ms'):.2f} |"
        )
    return lines
