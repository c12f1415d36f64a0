"""What each wire costs: REST JSON, REST binary, gRPC and system shared memory against one
aiaas server, for MiniLM (small input, heavy compute) and a small CNN with a large input
(1x3x224x224 FP32, light compute), all measured in the same run with REST JSON as baseline.

Every mode uses Triton's own Python clients, so the figures are what a Triton user gets
and the modes differ only in how the tensors travel. Shared memory goes through
tritonclient.http (the path tests/serve/test_shared_memory.py pins).

Usage: python -m bench protocol [--seconds 10] [--concurrency 1,8] [--models cnn,minilm]
Writes the table to stdout and to bench/results/protocol.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bench.protocol_clients import (
    MODES,
    Endpoint,
    Outputs,
    check_modes,
    open_session,
    reference_outputs,
    wire_sizes,
)
from bench.serve_bench import Model, prepare_minilm, start_aiaas

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "protocol"
RESULTS = ROOT / "bench" / "results"
SHM_ROOT = Path("/dev/shm")

CNN_CONFIG = """max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 200 }
"""
BASELINE = "REST JSON"
FLOOR = "model alone (ONNX Runtime in-process, no server)"


# ---- the CNN ---------------------------------------------------------------------------


def cnn_model() -> onnx.ModelProto:
    """Three strided convolutions, a max pool, global average pool and a 10-way linear layer:
    about 70 MFLOP, a few ms on one core, so moving its 600 KB input is a visible share
    of a request but not all of it. Weights are fixed random (He-scaled) values."""
    rng = np.random.default_rng(0)
    layers = [(3, 16, 2), (16, 32, 2), (32, 64, 1)]  # (in, out, stride), 3x3 kernels
    nodes, weights, previous = [], [], "image"
    for index, (channels_in, channels_out, stride) in enumerate(layers):
        scale = np.sqrt(2.0 / (channels_in * 9))
        kernel = (rng.standard_normal((channels_out, channels_in, 3, 3)) * scale).astype("f4")
        weights += [numpy_helper.from_array(kernel, f"w{index}"),
                    numpy_helper.from_array(np.zeros(channels_out, "f4"), f"b{index}")]  # fmt: skip
        nodes += [
            helper.make_node("Conv", [previous, f"w{index}", f"b{index}"], [f"conv{index}"],
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]),
            helper.make_node("Relu", [f"conv{index}"], [f"relu{index}"]),
        ]  # fmt: skip
        previous = f"relu{index}"
        if index == 1:
            nodes.append(helper.make_node("MaxPool", [previous], ["pool"], kernel_shape=[2, 2],
                                          strides=[2, 2]))  # fmt: skip
            previous = "pool"
    head = (rng.standard_normal((64, 10)) * np.sqrt(1.0 / 64)).astype("f4")
    weights += [numpy_helper.from_array(head, "head"),
                numpy_helper.from_array(np.zeros(10, "f4"), "head_bias")]  # fmt: skip
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["features"]),
        helper.make_node("Gemm", ["features", "head", "head_bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime of the last years reads
    onnx.checker.check_model(model)
    return model


def prepare_cnn(repo: Path) -> Model:
    folder = repo / "cnn" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(cnn_model(), folder / "model.onnx")
    (repo / "cnn" / "config.pbtxt").write_text(CNN_CONFIG)
    rng = np.random.default_rng(0)
    return Model("cnn", folder / "model.onnx",
                 lambda n: {"image": rng.random((n, 3, 224, 224), np.float32)})  # fmt: skip


def prepare_minilm_here(repo: Path) -> Model:
    """MiniLM as the serve suite builds it; its export is linked in when that suite has
    already made one, so a second export does not take the shared cores."""
    made = ROOT / "bench" / "_work" / "repo" / "minilm" / "1" / "model.onnx"
    target = repo / "minilm" / "1" / "model.onnx"
    if made.exists() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(made, target)
    return prepare_minilm(repo)


@dataclass(frozen=True)
class Point:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_point(mode: str, endpoint: Endpoint, model: str, feed: Outputs, outputs: Outputs,
              concurrency: int, seconds: float) -> Point:  # fmt: skip
    """Closed loop: `concurrency` threads, each with its own client, send back-to-back
    requests until the shared deadline; all start together behind a barrier."""
    clock: dict[str, float] = {}
    barrier = threading.Barrier(concurrency, action=lambda: clock.update(start=time.perf_counter()))

    def work(worker: int) -> tuple[list[float], int, float]:
        try:
            session = open_session(mode, endpoint, model, feed, outputs, worker)
        except BaseException:
            barrier.abort()
            raise
        latencies, errors, last = [], 0, 0.0
        try:
            barrier.wait(timeout=120)
            deadline = clock["start"] + seconds
            while (now := time.perf_counter()) < deadline:
                try:
                    session.infer()
                except Exception:
                    errors += 1  # counted, and left out of req/s and latency
                    continue
                finally:
                    last = time.perf_counter()
                latencies.append(last - now)
        finally:
            session.close()
        return latencies, errors, last

    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(work, range(concurrency)))
    latencies = np.array([value for each in results for value in each[0]]) * 1000
    if not len(latencies):
        raise RuntimeError(f"{model} {mode} c={concurrency}: no request succeeded")
    elapsed = max(each[2] for each in results) - clock["start"]
    return Point(
        len(latencies) / elapsed,
        float(np.percentile(latencies, 50)),
        float(np.percentile(latencies, 99)),
        sum(each[1] for each in results),
    )


def compute_floor(model: Model, feed: Outputs, seconds: float) -> Point:
    """The model alone: ONNX Runtime in this process, batch 1, no server and no wire. What
    is left of a request's time above this is what the protocol costs."""
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    session.run(None, feed)
    latencies, start = [], time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        session.run(None, feed)
        latencies.append(time.perf_counter() - now)
    elapsed = time.perf_counter() - start
    milliseconds = np.array(latencies) * 1000
    return Point(len(latencies) / elapsed, float(np.percentile(milliseconds, 50)),
                 float(np.percentile(milliseconds, 99)), 0)  # fmt: skip


# ---- bytes on the wire -----------------------------------------------------------------


def bench_model(model: Model, endpoint: Endpoint, levels: list[int], seconds: float):
    print(f"\n== {model.name}", flush=True)
    feed = model.feed(1)
    reference = reference_outputs(endpoint, model.name, feed, model.outputs)
    check_modes(endpoint, model.name, feed, reference)
    sizes = wire_sizes(endpoint, model.name, feed, reference)
    points: dict[tuple[str, int], Point] = {}
    points[FLOOR, 1] = floor = compute_floor(model, feed, min(seconds, 3.0))
    print(f"  {FLOOR}: {floor.requests_per_s:.1f} inferences/s, p50 {floor.p50_ms:.2f} ms")
    for mode in MODES:
        run_point(mode, endpoint, model.name, feed, reference, max(levels), min(seconds, 2.0))
        for level in levels:
            points[mode, level] = p = run_point(
                mode, endpoint, model.name, feed, reference, level, seconds
            )
            print(f"  {mode:14s} c={level:<2d} {p.requests_per_s:8.1f} req/s  p50 {p.p50_ms:7.2f}"
                  f" ms  p99 {p.p99_ms:7.2f} ms  errors {p.errors}", flush=True)  # fmt: skip
    return points, sizes


def table_rows(name: str, points: dict, levels: list[int]) -> list[str]:
    floor = points[FLOOR, 1]
    rows = [f"| {name} | {FLOOR} | 1 | {floor.requests_per_s:.1f} | {floor.p50_ms:.2f}"
            f" | {floor.p99_ms:.2f} | - | - |"]  # fmt: skip
    for level in levels:
        base = points[BASELINE, level]
        for mode in MODES:
            p = points[mode, level]
            label = f"{mode} (baseline)" if mode == BASELINE else mode
            rows.append(
                f"| {name} | {label} | {level} | {p.requests_per_s:.1f} | {p.p50_ms:.2f}"
                f" | {p.p99_ms:.2f} | {p.requests_per_s / base.requests_per_s:.2f}x | {p.errors} |"
            )
    return rows


def _size(count: int) -> str:
    if count >= 1 << 20:
        return f"{count / (1 << 20):.2f} MiB"
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count} B"


def size_rows(name: str, sizes: dict) -> list[str]:
    return [f"| {name} | {mode} | {sizes[mode][0]:,} ({_size(sizes[mode][0])}) "
            f"| {sizes[mode][1]:,} ({_size(sizes[mode][1])}) |" for mode in MODES]  # fmt: skip


def reading(measured: dict, levels: list[int]) -> list[str]:
    """Claims computed from this run's numbers, then what they mean in general."""
    lines = ["## Reading these figures", ""]
    for name, (points, sizes) in measured.items():
        for level in levels:
            s, b = points["shared memory", level], points["REST binary", level]
            j, g = points["REST JSON", level], points["gRPC", level]
            lines.append(
                f"- {name}, c={level}: shared memory was {s.requests_per_s / b.requests_per_s:.2f}x"
                f" REST binary, {s.requests_per_s / g.requests_per_s:.2f}x gRPC and "
                f"{s.requests_per_s / j.requests_per_s:.2f}x REST JSON in req/s "
                f"(p50 {s.p50_ms:.2f} ms against {b.p50_ms:.2f}, {g.p50_ms:.2f} and "
                f"{j.p50_ms:.2f} ms)."
            )
        request = sizes["REST binary"][0]
        lines.append(
            f"- {name}: one request is {_size(sizes['REST JSON'][0])} as JSON, "
            f"{_size(request)} as REST binary, {_size(sizes['gRPC'][0])} over gRPC and "
            f"{_size(sizes['shared memory'][0])} with shared memory "
            f"({request / sizes['shared memory'][0]:.0f}x less than REST binary)."
        )
        if sizes["REST JSON"][0] < request:
            lines.append(f"- {name}: JSON is the smaller request body here; small integers "
                         "(token ids) are shorter as text than as 8-byte INT64.")  # fmt: skip
        lines += _where_it_stops(name, points, levels)
    lines += [
        "",
        "Shared memory takes the tensors out of the request: no copy through the socket, no "
        "encoding on the client and no decoding on the server, only a memcpy into and out of a "
        "mapped region. It pays where moving the tensor costs a lot next to running the model "
        "(large inputs, small models) and stops mattering when compute dominates (a large encoder"
        " over a few KiB of token ids), or when the cores are busy running the model anyway "
        "(higher concurrency on few cores: fewer bytes to move then shorten the wait more than "
        "they add requests). It also needs client and server on the same host: for a remote "
        "client the choice is between the wire formats, where binary tensors (REST binary or "
        "gRPC) are what pays, and JSON pays its text encoding on both ends in every request.",
    ]
    return lines


def _where_it_stops(name: str, points: dict, levels: list[int]) -> list[str]:
    """The compute share of a request, and the concurrencies where shared memory no longer
    moved req/s by 10% or more over REST binary."""
    floor, binary = points[FLOOR, 1].p50_ms, points["REST binary", min(levels)].p50_ms
    lines = [
        f"- {name}: the model alone takes {floor:.2f} ms (p50), {floor / binary:.0%} of a REST "
        f"binary request's {binary:.2f} ms at c={min(levels)}; shared memory's p50 there was "
        f"{points['shared memory', min(levels)].p50_ms:.2f} ms."
    ]
    gains = {c: points["shared memory", c].requests_per_s / points["REST binary", c].requests_per_s
             for c in levels}  # fmt: skip
    flat = [c for c, gain in gains.items() if abs(gain - 1) < 0.10]
    if flat:
        where = ", ".join(f"c={c}" for c in flat)
        lines.append(f"- {name}: at {where} shared memory was within 10% of REST binary in "
                     "req/s: there it has stopped mattering for throughput.")  # fmt: skip
    return lines


def leftover_regions() -> list[Path]:
    return sorted(SHM_ROOT.glob(f"aiaas_bench_{os.getpid()}_*"))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench protocol")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--models", default="cnn,minilm")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    repo = WORK / "repo"
    names = args.models.split(",")
    for folder in repo.glob("*"):  # serve only the models chosen now; keep their exports
        if folder.name not in names:
            shutil.rmtree(folder)
    repo.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    prepare = {"cnn": prepare_cnn, "minilm": prepare_minilm_here}
    chosen = [prepare[name](repo) for name in names]
    server, port, grpc_port = start_aiaas(repo, WORK / "aiaas.log")
    endpoint = Endpoint(f"127.0.0.1:{port}", f"127.0.0.1:{grpc_port}")
    try:
        measured = {model.name: bench_model(model, endpoint, levels, args.seconds)
                    for model in chosen}  # fmt: skip
    finally:
        server.stop()
        left = leftover_regions()
        for path in left:
            path.unlink()
        if left:
            print(f"removed {len(left)} shared memory regions left behind", flush=True)
    write_report(measured, levels, args.seconds)


def write_report(measured: dict, levels: list[int], seconds: float) -> None:
    header = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores, one aiaas "
        f"server, {seconds:g} s per point, closed loop. Client: Triton's Python clients "
        "(tritonclient.http for REST and shared memory, tritonclient.grpc for gRPC), one "
        "client and one connection per worker thread, all threads in one process (cheap on "
        "few cores; they share one GIL, and the client shares the cores with the server). "
        "Each request builds its inputs from numpy and reads its outputs back into numpy; "
        "shared memory copies them into and out of one pair of regions per worker, "
        "registered once. All modes were checked to give the same outputs before timing. "
        "Ratio: req/s over REST JSON at the same concurrency. The first row per model is "
        "the model alone in this process at batch 1: the floor under a c=1 latency.",
        "",
        "| model | mode | concurrency | req/s | p50 ms | p99 ms | vs REST JSON | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sizes = ["", "Bytes per inference, body only (HTTP headers left out; gRPC: framed "
             "protobuf messages):", "", "| model | mode | request bytes | response bytes |",
             "|---|---|---|---|"]  # fmt: skip
    rows: list[str] = []
    for name, (points, wire_size) in measured.items():
        rows += table_rows(name, points, levels)
        sizes += size_rows(name, wire_size)
    text = "\n".join([*header, *rows, *sizes, "", *reading(measured, levels)]) + "\n"
    (RESULTS / "protocol.md").write_text(text)
    print("\n" + text)
