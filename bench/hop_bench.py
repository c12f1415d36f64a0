"""What one hop costs per request: ``DataPlane.infer`` called in process, against the same
call made over the hop (EngineClient -> ipc:// -> EngineService in an engine process ->
a DataPlane over the same model), as `aiaas serve --workers N` makes it for every infer.

Two sizes of tensors: the example MLP (one row of 64 floats in, 10 out) and a
MiniLM-sized batch (8 sequences of 128 token ids, attention mask and token types in;
8 x 128 x 384 floats, 1.5 MiB, out) from a model no dearer than MiniLM's embedding
lookup, so that moving the tensors, not the model, is what the figures show. Both use
the serve bench's dynamic-batching configs. Closed loop for --seconds at each
concurrency after a warm-up; us/request is wall time over requests answered (at
concurrency 1 the latency; above it the inverse of throughput), and CPU us/request the
CPU time of every process involved (all threads, from /proc) over the same requests:
on a shared machine the CPU figures move less than the wall-clock ones. A row with no
model (the engine's `live` operation) shows the hop alone. The hop is measured twice, in
the same run: with frames of 64 KiB and more in shared memory (``hop_arena``, what
`aiaas serve` does) and with every frame in the socket.

Usage: python -m bench hop [--seconds 5] [--concurrency 1,64]
Writes the table to stdout and to bench/results/hop.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import uvloop
from onnx import TensorProto, helper, numpy_helper

from aiaas.serve.dataplane import DataPlane
from aiaas.serve.repository import ControlMode, ModelRepository
from aiaas.serve.sources import DirectorySource
from aiaas.serve.types import InferInput, InferRequest, InferResponse
from aiaas.serve.workers.hop import EngineClient, EngineService
from aiaas.serve.workers.hop_arena import ARENA_BYTES
from bench.serve_bench import MINILM_CONFIG, MLP_CONFIG

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SEQUENCE, HIDDEN, VOCAB, BATCH = 128, 384, 1000, 8
#: The key of the hop-alone rows.
ECHO = "live"
#: Where the hop's large frames go, by the arena size both sides offer.
ARENAS = {"shared memory": ARENA_BYTES, "the socket": 0}

Infer = Callable[[str, str | None, InferRequest], Awaitable[InferResponse]]


@dataclass(frozen=True)
class Workload:
    model: str
    label: str
    inputs: dict[str, np.ndarray]

    def request(self) -> InferRequest:
        return InferRequest(
            [InferInput(n, _datatype(a), tuple(a.shape), a) for n, a in self.inputs.items()]
        )


def _datatype(array: np.ndarray) -> str:
    return "FP32" if array.dtype == np.float32 else "INT64"


def minilm_sized_model() -> onnx.ModelProto:
    """MiniLM's inputs and output, with only its embedding lookup for compute."""
    rng = np.random.default_rng(0)
    ids = ("input_ids", "attention_mask", "token_type_ids")
    nodes = [
        helper.make_node("Gather", ["words", "input_ids"], ["word_vectors"]),
        helper.make_node("Gather", ["types", "token_type_ids"], ["type_vectors"]),
        helper.make_node("Add", ["word_vectors", "type_vectors"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["last_hidden_state"]),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal((VOCAB, HIDDEN)).astype("f4"), "words"),
        numpy_helper.from_array(rng.standard_normal((2, HIDDEN)).astype("f4"), "types"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
    ]
    graph = helper.make_graph(
        nodes,
        "minilm_sized",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", SEQUENCE]) for n in ids],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", SEQUENCE, HIDDEN]
            )
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def prepare(repo: Path) -> list[Workload]:
    sys.path.insert(0, str(ROOT / "examples"))
    from make_model_repository import mlp_model

    for name, model, config in (
        ("mlp", mlp_model(), MLP_CONFIG),
        ("minilm_sized", minilm_sized_model(), MINILM_CONFIG),
    ):
        (repo / name / "1").mkdir(parents=True)
        onnx.save(model, repo / name / "1" / "model.onnx")
        (repo / name / "config.pbtxt").write_text(config)
    rng = np.random.default_rng(0)
    tokens = {
        "input_ids": rng.integers(0, VOCAB, (BATCH, SEQUENCE), dtype=np.int64),
        "attention_mask": np.ones((BATCH, SEQUENCE), np.int64),
        "token_type_ids": np.zeros((BATCH, SEQUENCE), np.int64),
    }
    return [
        Workload("mlp", "MLP, 1 x 64 FP32 in", {"input": rng.random((1, 64), np.float32)}),
        Workload("minilm_sized", f"MiniLM-sized, {BATCH} x {SEQUENCE} tokens", tokens),
    ]


@dataclass(frozen=True)
class Point:
    #: Wall time over requests answered: the latency at concurrency 1, else 1 / throughput.
    wall_us: float
    #: CPU time of every process involved (all their threads) over requests answered.
    cpu_us: float
    #: The engine process's share of it (what bounds N front ends sharing one engine).
    engine_cpu_us: float = 0.0
    #: Rows per ONNX Runtime call: how well the dynamic batcher could merge requests.
    rows_per_run: float = 0.0


Counts = Callable[[], Awaitable[tuple[int, int]]]


def model_counts(dataplane: DataPlane, model: str) -> tuple[int, int]:
    """(rows inferred, ONNX Runtime calls) of a model so far, from its statistics."""
    stats = dataplane.model_statistics(model, None)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


async def no_counts() -> tuple[int, int]:
    return 0, 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes, every thread included (/proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def closed_loop(
    call: Callable[[], Awaitable[object]],
    concurrency: int,
    seconds: float,
    pids: list[int],
    counts: Counts = no_counts,
) -> Point:
    """Closed loop for ``seconds`` after a warm-up of a quarter of that; the last of
    ``pids`` is the engine's when there is one."""

    async def run_for(duration: float) -> Point:
        count = 0
        rows, runs = await counts()
        started, cpu, engine = time.perf_counter(), cpu_seconds(pids), cpu_seconds(pids[1:])
        deadline = started + duration

        async def caller() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                await call()
                count += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu, engine = cpu_seconds(pids) - cpu, cpu_seconds(pids[1:]) - engine
        rows_after, runs_after = await counts()
        rows_per_run = (rows_after - rows) / max(1, runs_after - runs)
        return Point(elapsed * 1e6 / count, cpu * 1e6 / count, engine * 1e6 / count, rows_per_run)

    await run_for(seconds / 4)
    return await run_for(seconds)


async def measure_in_process(
    repo: Path, workloads: list[Workload], levels: list[int], seconds: float
) -> dict[tuple[str, int], Point]:
    repository = ModelRepository([DirectorySource(repo)], ControlMode.NONE)
    await repository.start()
    dataplane = DataPlane(repository)
    points = {}
    try:
        for w in workloads:
            for c in levels:
                call = functools.partial(_infer, dataplane.infer, w)
                counts = functools.partial(_local_counts, dataplane, w.model)
                points[(w.model, c)] = await closed_loop(call, c, seconds, [os.getpid()], counts)
    finally:
        await repository.close()
    return points


async def measure_over_the_hop(
    address: str,
    engine_pid: int,
    workloads: list[Workload],
    levels: list[int],
    seconds: float,
    arena_bytes: int,
) -> dict[tuple[str, int], Point]:
    client = EngineClient(address, connect_wait_s=60, arena_bytes=arena_bytes)
    client.start()
    pids = [os.getpid(), engine_pid]
    points = {}
    try:
        for c in levels:
            points[(ECHO, c)] = await closed_loop(lambda: client.call("live"), c, seconds, pids)
        for w in workloads:
            for c in levels:
                call = functools.partial(_infer, client.infer, w)
                counts = functools.partial(_remote_counts, client, w.model)
                points[(w.model, c)] = await closed_loop(call, c, seconds, pids, counts)
    finally:
        await client.close()
    return points


async def _infer(infer: Infer, work: Workload) -> InferResponse:
    return await infer(work.model, None, work.request())


async def _local_counts(dataplane: DataPlane, model: str) -> tuple[int, int]:
    return model_counts(dataplane, model)


async def _remote_counts(client: EngineClient, model: str) -> tuple[int, int]:
    rows, runs = await client.call("counts", model=model)
    return rows, runs


def start_engine(repo: Path, address: str, arena_bytes: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "bench.hop_bench", "--engine", str(repo), address]
    command += ["--arena-bytes", str(arena_bytes)]
    with log.open("wb") as out:
        engine = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while b"bound" not in log.read_bytes():
        if engine.poll() is not None or time.monotonic() > deadline:
            engine.kill()
            raise RuntimeError(f"the engine did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return engine


async def serve_engine(repo: Path, address: str, arena_bytes: int) -> None:
    """The engine process of the measurement (``--engine``): until SIGTERM."""
    repository = ModelRepository([DirectorySource(repo)], ControlMode.NONE)
    await repository.start()
    dataplane = DataPlane(repository)
    service = EngineService(dataplane, address, arena_bytes=arena_bytes)

    async def counts(model: str) -> list[int]:
        return list(model_counts(dataplane, model))

    service.ops["counts"] = counts
    service.bind()
    print("bound", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    running = asyncio.create_task(service.run())
    await stop.wait()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await repository.close()


def table(
    workloads: list[Workload],
    levels: list[int],
    local: dict[tuple[str, int], Point],
    hops: dict[str, dict[tuple[str, int], Point]],
) -> list[str]:
    lines = [
        "| workload | concurrency | in process: us/request | CPU us/request "
        "| large frames in | over the hop: us/request | CPU us/request (both processes) "
        "| of it the engine's | hop / in process | CPU the hop adds, us/request "
        "| rows per ONNX Runtime call (in process / over the hop) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in levels:
        for where, hop in hops.items():
            there = hop[(ECHO, c)]
            lines.append(
                f"| the hop alone (a `live` call: no model, no tensors) | {c} | - | - "
                f"| {where} | {there.wall_us:,.0f} | {there.cpu_us:,.0f} "
                f"| {there.engine_cpu_us:,.0f} | - | - | - |"
            )
    for w in workloads:
        for c in levels:
            here = local[(w.model, c)]
            for where, hop in hops.items():
                there = hop[(w.model, c)]
                lines.append(
                    f"| {w.label} | {c} | {here.wall_us:,.0f} | {here.cpu_us:,.0f} | {where} "
                    f"| {there.wall_us:,.0f} | {there.cpu_us:,.0f} "
                    f"| {there.engine_cpu_us:,.0f} | {there.wall_us / here.wall_us:.2f} x "
                    f"| {there.cpu_us - here.cpu_us:+,.0f} "
                    f"| {here.rows_per_run:.1f} / {there.rows_per_run:.1f} |"
                )
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench hop")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--models", default="mlp,minilm_sized")
    parser.add_argument("--engine", nargs=2, metavar=("REPO", "ADDRESS"), help=argparse.SUPPRESS)
    parser.add_argument("--arena-bytes", type=int, default=ARENA_BYTES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.engine:
        uvloop.run(serve_engine(Path(args.engine[0]), args.engine[1], args.arena_bytes))
        return
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="hop-bench-"))
    try:
        chosen = args.models.split(",")
        workloads = [w for w in prepare(work / "repo") if w.model in chosen]
        address = f"ipc://{work}/engine"
        local = uvloop.run(measure_in_process(work / "repo", workloads, levels, args.seconds))
        hops = {}
        for where, arena_bytes in ARENAS.items():
            engine = start_engine(work / "repo", address, arena_bytes, work / "engine.log")
            try:
                hops[where] = uvloop.run(
                    measure_over_the_hop(
                        address, engine.pid, workloads, levels, args.seconds, arena_bytes
                    )
                )
            finally:
                engine.terminate()
                engine.wait(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = table(workloads, levels, local, hops)
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    title = f"# The hop (python -m bench hop --seconds {args.seconds:g})"
    (RESULTS / "hop.md").write_text(f"{title}\n\n{text}")


if __name__ == "__main__":
    main(sys.argv[1:])
