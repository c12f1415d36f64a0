"""Serving throughput and latency: aiaas against the hand-written FastAPI endpoint and
against raw ONNX Runtime at its best batch size, all measured in the same run.

Usage: python -m bench serve [--seconds 10] [--concurrency 1,8,64] [--models mlp,minilm]
                             [--workers 1,2]
Each `--workers` count is a separate aiaas server (`aiaas serve --workers N`) measured over
the three wires. Writes the table to stdout and to bench/results/serve.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench import wire
from bench.loadgen import (
    LoadResult,
    Process,
    free_port,
    run_h2load,
    run_wrk,
    serve_command,
    write_script,
)

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

    @property
    def outputs(self) -> list[str]:
        return [o.name for o in ort.InferenceSession(str(self.path)).get_outputs()]


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


def raw_best_batch(model: Model, sweep_seconds: float, seconds: float) -> tuple[int, float]:
    """ONNX Runtime in this process, no server: items/s at its best batch size.

    The batch is chosen from short points; its rate is then measured again for as long
    as a server point, since the best of six noisy short points overstates the ceiling.
    """
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    rates = {batch: _items_per_s(session, model.feed(batch), sweep_seconds)
             for batch in (1, 4, 8, 16, 32, 64)}  # fmt: skip
    best = max(rates, key=lambda batch: rates[batch])
    return best, _items_per_s(session, model.feed(best), seconds)


def _items_per_s(
    session: ort.InferenceSession, feed: dict[str, np.ndarray], seconds: float
) -> float:
    batch = len(next(iter(feed.values())))
    session.run(None, feed)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, feed)
        count += batch
    return count / (time.perf_counter() - start)


Runner = Callable[[int, float], LoadResult]


def measure(label: str, run: Runner, levels: list[int], seconds: float) -> dict[int, LoadResult]:
    results = {}
    with contextlib.suppress(RuntimeError):  # a slow model may finish no request in it
        run(max(levels), 3.0)  # warm-up
    for level in levels:
        results[level] = r = run(level, seconds)
        print(f"  {label:28s} c={level:<3d} {r.requests_per_s:10.1f} req/s  p50 {r.p50_ms:7.2f} ms"
              f"  p99 {r.p99_ms:7.2f} ms  errors {r.errors}", flush=True)  # fmt: skip
    return results


def wrk_runner(url: str, script: Path) -> Runner:
    return lambda level, seconds: run_wrk(url, script, level, seconds)


def measure_grpc_echo(
    body: Path, levels: list[int], seconds: float, log: Path
) -> dict[int, LoadResult]:
    """What grpcio itself allows here: an echo servicer that runs no model."""
    port = free_port()
    echo = Process(
        [sys.executable, str(ROOT / "bench" / "baselines" / "grpc_echo.py"), str(port)],
        f"tcp://127.0.0.1:{port}", WORK / "grpc-echo.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
    try:
        return measure(
            "grpcio echo (no model)",
            lambda c, secs: run_h2load(url, body, c, secs, wire.GRPC_HEADERS, log),
            levels, seconds,
        )  # fmt: skip
    finally:
        echo.stop()


def prefer_batch(config: Path, batch: int) -> None:
    """Tell the batcher the batch size this CPU runs best, as measured just before; what a
    Triton user does after perf_analyzer. Bigger batches are slower per item for MiniLM."""
    text = "\n".join(
        line for line in config.read_text().splitlines() if "preferred_batch_size" not in line
    )
    marker = "dynamic_batching {"
    config.write_text(text.replace(marker, f"{marker} preferred_batch_size: [ {batch} ]") + "\n")


def check_grpc(port: int, model: Model) -> None:
    """One real gRPC answer before h2load, which cannot see gRPC errors."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    inputs = []
    for name, array in model.feed(1).items():
        item = grpcclient.InferInput(name, list(array.shape), wire.V2_DATATYPES[array.dtype])
        item.set_data_from_numpy(array)
        inputs.append(item)
    result = client.infer(model.name, inputs)
    if result.as_numpy(model.outputs[0]) is None:
        raise RuntimeError(f"gRPC answer for {model.name} has no {model.outputs[0]}")
    client.close()


def start_aiaas(
    repo: Path, log: Path, extra: Sequence[str] = (), tree: Path | None = None
) -> tuple[Process, int, int]:
    """`aiaas serve` (of another code tree: see ``serve_command``), once it is ready."""
    port, grpc_port = free_port(), free_port()
    command = serve_command(repo, port, grpc_port, tuple(extra), tree=tree)
    return Process(command, f"http://127.0.0.1:{port}/v2/health/ready", log), port, grpc_port


def start_fastapi(model: Model, log: Path) -> tuple[Process, int]:
    port = free_port()
    script = ROOT / "bench" / "baselines" / "fastapi_endpoint.py"
    command = [sys.executable, str(script), str(model.path), str(port)]
    return Process(command, f"http://127.0.0.1:{port}/docs", log), port


def bench_model(
    model: Model,
    repo: Path,
    levels: list[int],
    seconds: float,
    grpc_ceiling: bool,
    workers: Sequence[int] = (1,),
) -> list[str]:
    print(f"\n== {model.name}", flush=True)
    batch, ceiling = raw_best_batch(model, min(seconds, 3.0), seconds)
    print(f"  raw ONNX Runtime best batch {batch}: {ceiling:.1f} items/s", flush=True)
    prefer_batch(repo / model.name / "config.pbtxt", batch)
    feed = model.feed(1)
    json_script = write_script(WORK, f"{model.name}-json", wire.json_body(feed), "application/json")
    body, header_length = wire.binary_body(feed, model.outputs)
    binary_script = write_script(
        WORK, f"{model.name}-binary", body, "application/octet-stream",
        {"Inference-Header-Content-Length": str(header_length)},
    )  # fmt: skip
    grpc_body = WORK / f"{model.name}.grpc"
    grpc_body.write_bytes(wire.grpc_body(model.name, feed))
    path = f"/v2/models/{model.name}/infer"
    fastapi, port = start_fastapi(model, WORK / f"fastapi-{model.name}.log")
    try:
        url = f"http://127.0.0.1:{port}{path}"
        base = measure("hand-written FastAPI", wrk_runner(url, json_script), levels, seconds)
    finally:
        fastapi.stop()
    log = WORK / f"h2load-{model.name}.log"
    ceiling_grpc = measure_grpc_echo(grpc_body, levels, seconds, log) if grpc_ceiling else {}
    ours: dict[str, dict[int, LoadResult]] = {}
    for count in workers:
        extra = ["--workers", str(count)]
        server, port, grpc_port = start_aiaas(
            repo, WORK / f"aiaas-{model.name}-w{count}.log", extra
        )
        url = f"http://127.0.0.1:{port}{path}"
        grpc_url = f"http://127.0.0.1:{grpc_port}/inference.GRPCInferenceService/ModelInfer"
        runners: dict[str, Runner] = {
            f"aiaas REST JSON, workers {count}": wrk_runner(url, json_script),
            f"aiaas REST binary, workers {count}": wrk_runner(url, binary_script),
            f"aiaas gRPC, workers {count}": lambda c, secs, grpc_url=grpc_url: run_h2load(
                grpc_url, grpc_body, c, secs, wire.GRPC_HEADERS, log
            ),
        }
        try:
            check_grpc(grpc_port, model)
            ours |= {label: measure(label, run, levels, seconds) for label, run in runners.items()}
        finally:
            server.stop()
    TARGETS.extend(target_lines(model.name, base, ours, ceiling, max(levels), workers))
    rows = [
        f"| {model.name} | raw ONNX Runtime, batch {batch} (ceiling) | - | {ceiling:.0f} items/s"
        " | - | - | 1.00 of ceiling |"
    ]
    for level in levels:
        b = base[level]
        rows.append(
            f"| {model.name} | FastAPI + pydantic (baseline) | {level} | {b.requests_per_s:.0f}"
            f" | {b.p50_ms:.2f} | {b.p99_ms:.2f} | 1.00 |"
        )
        e = ceiling_grpc.get(level)
        if e is not None:
            rows.append(
                f"| {model.name} | grpcio echo server, no model (gRPC ceiling) | {level}"
                f" | {e.requests_per_s:.0f} | {e.p50_ms:.2f} | {e.p99_ms:.2f}"
                f" | {e.requests_per_s / b.requests_per_s:.2f}x baseline |"
            )
        for label, results in ours.items():
            o = results[level]
            versus_echo = (
                f", {o.requests_per_s / e.requests_per_s:.2f} of grpcio echo"
                if "gRPC" in label and e is not None
                else ""
            )
            rows.append(
                f"| {model.name} | {label} | {level} | {o.requests_per_s:.0f} | {o.p50_ms:.2f}"
                f" | {o.p99_ms:.2f} | {o.requests_per_s / b.requests_per_s:.2f}x baseline,"
                f" {o.requests_per_s / ceiling:.2f} of ceiling{versus_echo} |"
            )
    return rows


#: Lines of the issue 3 / 21 targets, gathered over the models of one run.
TARGETS: list[str] = []


def target_lines(
    name: str,
    base: dict[int, LoadResult],
    ours: dict[str, dict[int, LoadResult]],
    ceiling: float,
    top: int,
    workers: Sequence[int],
) -> list[str]:
    """The ratios the issues set targets on, at the highest concurrency of the run: gRPC
    against the FastAPI baseline and against aiaas's own REST binary (issue 21), every
    wire against the raw ONNX Runtime ceiling (MiniLM), and c=1 latency per worker count."""
    lines = []
    for count in workers:
        rate = {wire: ours[f"aiaas {wire}, workers {count}"] for wire in WIRES}
        grpc = rate["gRPC"][top].requests_per_s
        parts = [
            f"gRPC {grpc:.0f} req/s = {grpc / base[top].requests_per_s:.2f} x FastAPI"
            f" and {grpc / rate['REST binary'][top].requests_per_s:.2f} x REST binary",
            "of the raw ONNX Runtime ceiling: " + ", ".join(
                f"{wire} {rate[wire][top].requests_per_s / ceiling:.2f}" for wire in WIRES
            ),
        ]  # fmt: skip
        if 1 in rate["gRPC"]:
            parts.append("c=1 p50: " + ", ".join(f"{w} {rate[w][1].p50_ms:.2f} ms" for w in WIRES))
        lines.append(f"- {name}, workers {count}, c={top}: " + "; ".join(parts))
    return lines


WIRES = ("REST JSON", "REST binary", "gRPC")


def bench_spinning(model: Model, repo: Path, seconds: float) -> list[str]:
    """aiaas REST JSON under each `spinning` choice, alone and under load, in one run:
    what busy-waiting ONNX Runtime threads buy a lone client and cost a loaded server."""
    from aiaas.serve.serving_config import SPINNING_CHOICES

    config = repo / model.name / "config.pbtxt"
    original = config.read_text()
    body = wire.json_body(model.feed(1))
    script = write_script(WORK, f"{model.name}-json", body, "application/json")
    results: dict[str, dict[int, LoadResult]] = {}
    try:
        for choice in SPINNING_CHOICES:
            spinning = f'parameters {{ key: "spinning" value: {{ string_value: "{choice}" }} }}'
            config.write_text(f"{original.rstrip()}\n{spinning}\n")
            server, port, _ = start_aiaas(repo, WORK / f"aiaas-spinning-{choice}.log")
            url = f"http://127.0.0.1:{port}/v2/models/{model.name}/infer"
            try:
                label = f"aiaas REST JSON, {choice}"
                results[choice] = measure(label, wrk_runner(url, script), [1, 64], seconds)
            finally:
                server.stop()
    finally:
        config.write_text(original)
    rows = []
    for level in (1, 64):
        base = results[SPINNING_CHOICES[0]][level].requests_per_s
        for choice, by_level in results.items():
            r = by_level[level]
            rows.append(
                f"| {model.name} | {choice} | {level} | {r.requests_per_s:.0f} | {r.p50_ms:.2f}"
                f" | {r.p99_ms:.2f} | {r.requests_per_s / base:.2f}x {SPINNING_CHOICES[0]} |"
            )
    return rows


def cpu_name() -> str:
    """The CPU beside every figure: the machines this project runs on differ."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench serve")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--models", default="mlp,minilm")
    parser.add_argument("--workers", default="1,2", help="aiaas's --workers counts to measure")
    parser.add_argument("--no-spinning", action="store_true", help="skip the spinning sweep")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    repo = WORK / "repo"
    prepare = {"mlp": prepare_mlp, "minilm": prepare_minilm}
    chosen = [prepare[name](repo) for name in args.models.split(",")]
    rows: list[str] = []
    for index, model in enumerate(chosen):
        # the gRPC ceiling once, with the first model's (the small one's) request
        rows += bench_model(
            model, repo, levels, args.seconds, grpc_ceiling=index == 0, workers=workers
        )
    spin = chosen[0].name == "mlp" and not args.no_spinning
    spinning = bench_spinning(chosen[0], repo, args.seconds) if spin else []
    header = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores ({cpu_name()}), "
        f"{args.seconds:.0f} s per point, closed loop, one connection per client: wrk for REST, "
        "h2load (nghttp2) for gRPC; both in C, so the load generator does not compete with "
        "the server for Python time.",
        "",
        "| model | server | concurrency | req/s | p50 ms | p99 ms | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + rows) + "\n"
    if TARGETS:
        table += "\n".join(["", "Targets (issues 3 and 21):", "", *TARGETS]) + "\n"
    if spinning:
        table += "\n".join([
            "",
            "ONNX Runtime's thread spinning (the model config's `spinning` parameter), aiaas "
            "REST JSON:",
            "",
            "| model | spinning | concurrency | req/s | p50 ms | p99 ms | ratio |",
            "|---|---|---|---|---|---|---|",
            *spinning,
        ]) + "\n"  # fmt: skip
    (RESULTS / "serve.md").write_text(table)
    print("\n" + table)
