"""Serving throughput and latency: aiaas against the hand-written FastAPI endpoint and
against raw ONNX Runtime at its best batch size, all measured in the same run.

Usage: python -m bench serve [--seconds 10] [--concurrency 1,8,64] [--models mlp,minilm]
Writes the table to stdout and to bench/results/serve.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.loadgen import LoadResult, Process, free_port, run_wrk, v2_json_body, write_script

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work"
RESULTS = ROOT / "bench" / "results"

MLP_CONFIG = """max_batch_size: 64
dynamic_batching { max_queue_delay_microseconds: 200 }
"""
MINILM_CONFIG = """max_batch_size: 64
dynamic_batching { max_queue_delay_microseconds: 2000 }
"""


@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    #: batch size -> ONNX Runtime feed
    feed: Callable[[int], dict[str, np.ndarray]]


def prepare_mlp(repo: Path) -> Model:
    sys.path.insert(0, str(ROOT / "examples"))
    import onnx
    from make_model_repository import mlp_model

    folder = repo / "mlp" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(mlp_model(), folder / "model.onnx")
    (repo / "mlp" / "config.pbtxt").write_text(MLP_CONFIG)
    rng = np.random.default_rng(0)
    return Model("mlp", folder / "model.onnx", lambda n: {"input": rng.random((n, 64), np.float32)})


def prepare_minilm(repo: Path) -> Model:
    from aiaas.export.minilm import export_minilm

    path = repo / "minilm" / "1" / "model.onnx"
    if not path.exists():
        export_minilm(repo, name="minilm", version=1)
    (repo / "minilm" / "config.pbtxt").write_text(MINILM_CONFIG)
    names = [i.name for i in ort.InferenceSession(str(path)).get_inputs()]
    rng = np.random.default_rng(0)

    def feed(n: int) -> dict[str, np.ndarray]:
        ids = rng.integers(1000, 20000, (n, 128), dtype=np.int64)
        ids[:, 0] = 101
        values = {"input_ids": ids, "attention_mask": np.ones((n, 128), np.int64)}
        values["token_type_ids"] = np.zeros((n, 128), np.int64)
        return {name: values[name] for name in names}

    return Model("minilm", path, feed)


def raw_best_batch(model: Model, seconds: float) -> tuple[int, float]:
    """ONNX Runtime in this process, no server: items/s at its best batch size."""
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    best = (1, 0.0)
    for batch in (1, 4, 8, 16, 32, 64):
        feed = model.feed(batch)
        session.run(None, feed)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.run(None, feed)
            count += batch
        rate = count / (time.perf_counter() - start)
        if rate > best[1]:
            best = (batch, rate)
    return best


def json_body(model: Model) -> bytes:
    feed = model.feed(1)
    return v2_json_body(
        {
            name: ("FP32" if a.dtype == np.float32 else "INT64", list(a.shape), a.ravel().tolist())
            for name, a in feed.items()
        }
    )


def measure(
    label: str, url: str, script: Path, levels: list[int], seconds: float
) -> dict[int, LoadResult]:
    results = {}
    run_wrk(url, script, max(levels), 2)  # warm-up
    for level in levels:
        results[level] = run_wrk(url, script, level, seconds)
        r = results[level]
        print(f"  {label:28s} c={level:<3d} {r.requests_per_s:10.1f} req/s  p50 {r.p50_ms:7.2f} ms"
              f"  p99 {r.p99_ms:7.2f} ms  errors {r.errors}", flush=True)  # fmt: skip
    return results


def start_aiaas(repo: Path, log: Path) -> tuple[Process, int]:
    port = free_port()
    command = [
        sys.executable, "-m", "aiaas.cli", "serve", "--model-repository", str(repo),
        "--http-port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    if "--grpc-port" in (ROOT / "aiaas" / "cli.py").read_text():
        command += ["--grpc-port", str(free_port())]
    return Process(command, f"http://127.0.0.1:{port}/v2/health/ready", log), port


def start_fastapi(model: Model, log: Path) -> tuple[Process, int]:
    port = free_port()
    script = ROOT / "bench" / "baselines" / "fastapi_endpoint.py"
    command = [sys.executable, str(script), str(model.path), str(port)]
    return Process(command, f"http://127.0.0.1:{port}/docs", log), port


def bench_model(model: Model, repo: Path, levels: list[int], seconds: float) -> list[str]:
    print(f"\n== {model.name}", flush=True)
    batch, ceiling = raw_best_batch(model, min(seconds, 3.0))
    print(f"  raw ONNX Runtime best batch {batch}: {ceiling:.1f} items/s", flush=True)
    script = write_script(WORK, f"{model.name}-json", json_body(model), "application/json")
    path = f"/v2/models/{model.name}/infer"
    fastapi, port = start_fastapi(model, WORK / f"fastapi-{model.name}.log")
    try:
        url = f"http://127.0.0.1:{port}{path}"
        base = measure("hand-written FastAPI", url, script, levels, seconds)
    finally:
        fastapi.stop()
    server, port = start_aiaas(repo, WORK / f"aiaas-{model.name}.log")
    try:
        ours = measure("aiaas REST JSON", f"http://127.0.0.1:{port}{path}", script, levels, seconds)
    finally:
        server.stop()
    rows = [
        f"| {model.name} | raw ONNX Runtime, batch {batch} (ceiling) | - | {ceiling:.0f} items/s"
        " | - | - | 1.00 of ceiling |"
    ]
    for level in levels:
        b, o = base[level], ours[level]
        rows.append(
            f"| {model.name} | FastAPI + pydantic (baseline) | {level} | {b.requests_per_s:.0f}"
            f" | {b.p50_ms:.2f} | {b.p99_ms:.2f} | 1.00 |"
        )
        rows.append(
            f"| {model.name} | aiaas REST JSON | {level} | {o.requests_per_s:.0f} | {o.p50_ms:.2f}"
            f" | {o.p99_ms:.2f} | {o.requests_per_s / b.requests_per_s:.2f}x baseline,"
            f" {o.requests_per_s / ceiling:.2f} of ceiling |"
        )
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench serve")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--models", default="mlp,minilm")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    repo = WORK / "repo"
    prepare = {"mlp": prepare_mlp, "minilm": prepare_minilm}
    chosen = [prepare[name](repo) for name in args.models.split(",")]
    rows: list[str] = []
    for model in chosen:
        rows += bench_model(model, repo, levels, args.seconds)
    header = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores, "
        f"{args.seconds:.0f} s per point, wrk closed loop (one connection per client).",
        "",
        "| model | server | concurrency | req/s | p50 ms | p99 ms | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + rows) + "\n"
    (RESULTS / "serve.md").write_text(table)
    print("\n" + table)
