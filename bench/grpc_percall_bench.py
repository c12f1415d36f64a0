"""What one gRPC inference costs aiaas's single process, and where a request waits.

Several code trees of aiaas (say, the commit before a change and after it) serve the
same MLP side by side; h2load drives each in turn, interleaved, so every tree sees the
same machine. For each point the table gives req/s and latency, how busy the machine
was, and the CPU each thread of the server used: a server that answers slowly while
no core is full makes its requests wait somewhere, and the thread figures say where.
The grpcio echo server (no model) runs beside them as the ceiling of grpcio itself.

Usage: python -m bench grpc-percall [--seconds 8] [--concurrency 1,64] [--rounds 2]
       [--tree LABEL=PATH ...] [--profile]
A tree is a directory holding an `aiaas` package (a worktree, or `git archive` of a
commit); without --tree the current checkout is measured alone. --profile records
py-spy for each tree at the highest concurrency (`--idle --threads`, then `--idle --gil`)
as collapsed stacks under bench/_work/grpc_percall/, and prints their heaviest frames.
Writes the table to stdout and to bench/results/grpc_percall.md.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import wire
from bench.loadgen import LoadResult, Process, free_port, parse_trees, run_h2load
from bench.serve_bench import check_grpc, prepare_mlp, start_aiaas

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "grpc_percall"
RESULTS = ROOT / "bench" / "results"
ECHO = "grpcio echo (no model)"
LOOP = "event loop (main)"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    label: str
    process: Process
    grpc_port: int
    #: native thread id -> the Python thread's name (from py-spy dump), where known
    names: dict[int, str]

    @property
    def pid(self) -> int:
        return self.process.process.pid


def start_tree(label: str, tree: Path, repo: Path) -> Server:
    process, _, grpc_port = start_aiaas(repo, WORK / f"server-{label}.log", tree=tree)
    return Server(label, process, grpc_port, {})


def start_echo() -> Server:
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "baselines" / "grpc_echo.py"), str(port)]
    process = Process(command, f"tcp://127.0.0.1:{port}", WORK / "echo.log")
    return Server(ECHO, process, port, {})


def py_spy() -> str | None:
    """py-spy on the PATH, or beside this Python (a virtual environment not activated)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def thread_names(pid: int) -> dict[int, str]:
    """Native thread ids of the Python threads, from one `py-spy dump` (none without it:
    threads are then named by their native names only)."""
    spy = py_spy()
    if spy is None:
        return {}
    out = subprocess.run(
        [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    names = {}
    for line in out.splitlines():
        # Thread 1234 (idle): "MainThread"
        if line.startswith("Thread ") and '"' in line:
            ident = line.split()[1]
            name = line.split('"')[1]
            names[int(ident, 16) if ident.startswith("0x") else int(ident)] = name
    return names


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (name, CPU seconds so far) for every thread of ``pid``."""
    cpu = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / TICKS)
    return cpu


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Point:
    result: LoadResult
    machine_pct: float
    load_generator_pct: float
    threads: list[tuple[str, float]]  # (thread, % of one core), busiest first
    #: CPU the whole server, and its event-loop thread, spent per answered request: what
    #: a request costs, which a machine shared with other work blurs far less than req/s
    server_us: float = 0.0
    loop_us: float = 0.0


def measure(server: Server, body: Path, concurrency: int, seconds: float) -> Point:
    url = f"http://127.0.0.1:{server.grpc_port}/inference.GRPCInferenceService/ModelInfer"
    before_threads = thread_cpu(server.pid)
    before_machine = machine_busy()
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = run_h2load(url, body, concurrency, seconds, wire.GRPC_HEADERS, WORK / "h2load.log")
    wall = time.monotonic() - started
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_machine = machine_busy()
    after_threads = thread_cpu(server.pid)
    busy = (after_machine[0] - before_machine[0]) / (after_machine[1] - before_machine[1])
    generator = (
        after_children.ru_utime + after_children.ru_stime
        - before_children.ru_utime - before_children.ru_stime
    )  # fmt: skip
    used: dict[str, float] = collections.defaultdict(float)
    for tid, (name, seconds_after) in after_threads.items():
        spent = seconds_after - before_threads.get(tid, (name, 0.0))[1]
        label = _thread_label(server, tid, name)
        used[label] += spent / wall * 100
    threads = sorted(((k, v) for k, v in used.items() if v >= 1.0), key=lambda kv: -kv[1])
    per_request = 1e4 / max(result.requests_per_s, 1e-9)  # % of a core -> us per request
    return Point(
        result, busy * 100 * os.cpu_count(), generator / wall * 100, threads,
        server_us=sum(used.values()) * per_request,
        loop_us=used.get(LOOP, 0.0) * per_request,
    )  # fmt: skip


def _thread_label(server: Server, tid: int, name: str) -> str:
    if tid == server.pid:
        return LOOP
    python_name = server.names.get(tid)
    if python_name is not None:
        return f"py:{python_name}"
    return name


def profile(server: Server, body: Path, concurrency: int, seconds: float) -> list[str]:
    """py-spy while h2load runs: every thread with its idle time, then the GIL holder only."""
    spy = py_spy()
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    lines = []
    for kind, flags in (("idle", ["--idle", "--threads"]), ("gil", ["--idle", "--gil"])):
        out = WORK / f"pyspy-{_slug(server.label)}-{kind}.txt"
        spy = subprocess.Popen(
            [spy, "record", "--pid", str(server.pid), "--rate", "250", "--format", "raw",
             "--duration", str(round(seconds)), "--output", str(out), "--nonblocking", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        measure(server, body, concurrency, seconds)
        spy.wait()
        lines += [f"py-spy {kind} ({server.label}): {out.relative_to(ROOT)}"]
        lines += [f"  {share:5.1f}%  {frame}" for frame, share in heaviest(out)]
    return lines


def heaviest(collapsed: Path, top: int = 15) -> list[tuple[str, float]]:
    """The leaf frames that took the most samples in a collapsed-stack file."""
    counts: dict[str, int] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if frames[0].startswith("thread") or frames[0].startswith("process"):
            leaf = f"{frames[0]} :: {leaf}"
        counts[leaf] += int(count)
        total += int(count)
    return [(frame, 100 * n / total) for frame, n in counts.most_common(top)] if total else []


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def row(label: str, concurrency: int, point: Point, baseline: Point | None) -> str:
    r = point.result
    ratio = f"{r.requests_per_s / baseline.result.requests_per_s:.2f}" if baseline else "1.00"
    threads = ", ".join(f"{name} {pct:.0f}%" for name, pct in point.threads[:4])
    return (
        f"| {label} | {concurrency} | {r.requests_per_s:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"
        f" | {ratio} | {point.server_us:.0f} | {point.loop_us:.0f} | {point.machine_pct:.0f}%"
        f" | {point.load_generator_pct:.0f}% | {threads} |"
    )


def summary(servers: list[Server], points, levels: list[int]) -> list[str]:
    """Medians over the rounds: the ratio is the median of each round's own ratio."""
    lines = [
        "| server | concurrency | req/s | ratio | p50 ms | p99 ms | server CPU us/req"
        " | event loop us/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first = servers[0].label
    for level in levels:
        for server in servers:
            own = points[server.label, level]
            ratios = [
                p.result.requests_per_s / b.result.requests_per_s
                for p, b in zip(own, points[first, level], strict=True)
            ]
            lines.append(
                f"| {server.label} | {level}"
                f" | {statistics.median(p.result.requests_per_s for p in own):.0f}"
                f" | {statistics.median(ratios):.2f}"
                f" | {statistics.median(p.result.p50_ms for p in own):.2f}"
                f" | {statistics.median(p.result.p99_ms for p in own):.2f}"
                f" | {statistics.median(p.server_us for p in own):.0f}"
                f" | {statistics.median(p.loop_us for p in own):.0f} |"
            )
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench grpc-percall")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tree", action="append", default=[])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-echo", action="store_true")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    trees = parse_trees(args.tree, ROOT)
    WORK.mkdir(parents=True, exist_ok=True)
    model = prepare_mlp(WORK / "repo")
    body = WORK / "mlp.grpc"
    body.write_bytes(wire.grpc_body(model.name, model.feed(1)))
    servers: list[Server] = []
    try:
        for label, tree in trees.items():
            servers.append(start_tree(label, tree, WORK / "repo"))
            check_grpc(servers[-1].grpc_port, model)
        if not args.no_echo:
            servers.append(start_echo())
        for server in servers:
            server.names = thread_names(server.pid)
            measure(server, body, max(levels), 2.0)  # warm-up
        points = run_rounds(servers, body, levels, args.rounds, args.seconds)
        notes = []
        if args.profile:
            for server in servers:
                if server.label != ECHO:
                    notes += profile(server, body, max(levels), args.seconds)
    finally:
        for server in servers:
            server.process.stop()
    write_table(servers, points, levels, args, notes)


def run_rounds(
    servers: list[Server], body: Path, levels: list[int], rounds: int, seconds: float
) -> dict[tuple[str, int], list[Point]]:
    points: dict[tuple[str, int], list[Point]] = collections.defaultdict(list)
    for round_ in range(rounds):
        for level in levels:
            for server in servers if round_ % 2 == 0 else reversed(servers):
                point = measure(server, body, level, seconds)
                points[server.label, level].append(point)
                r = point.result
                print(f"  round {round_ + 1} {server.label:24s} c={level:<3d}"
                      f" {r.requests_per_s:8.0f} req/s p50 {r.p50_ms:6.2f} ms"
                      f" p99 {r.p99_ms:6.2f} ms  machine {point.machine_pct:4.0f}%"
                      f"  errors {r.errors}", flush=True)  # fmt: skip
    return points


def write_table(servers, points, levels, args, notes) -> None:
    cpu = _cpu_name()
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()}"
        f" cores ({cpu}), MLP, h2load (one connection and one stream per client),"
        f" {args.seconds:.0f} s a point, {args.rounds} rounds interleaved; every row is one"
        " point. Ratio: req/s over the first tree's in the same round. CPU per request: all"
        " the server's threads, and its event-loop thread alone. Threads: % of one core"
        " each, busiest first.",
        "",
        "| server | concurrency | req/s | p50 ms | p99 ms | ratio | server CPU us/req"
        " | event loop us/req | machine busy | h2load | server threads |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = servers[0].label
    for level in levels:
        for round_ in range(args.rounds):
            baseline = points[first, level][round_]
            for server in servers:
                point = points[server.label, level][round_]
                lines.append(row(server.label, level, point, baseline))
    medians = ["", f"Medians over the {args.rounds} rounds:", "", *summary(servers, points, levels)]
    text = "\n".join([*lines, *medians, "", *notes])
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "grpc_percall.md").write_text(text + "\n")


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main(sys.argv[1:])
