"""Soak: hours of steady traffic compressed into one run, with the MLP's version swapped
underneath it every minute, to show nothing leaks, slows down or drops on a swap.

Usage: python -m bench soak [--minutes 30] [--fraction 0.8] [--swap-secs 60]
Writes bench/results/soak.md and bench/results/soak.png, prints the verdict.

One real `aiaas serve` (poll mode) serves the example MLP and the tiny random Llama of
tests/tiny_llama.py. Capacity is measured first, closed loop (MLP over REST and gRPC at
once, the language-model streams already running); then MLP traffic runs open loop at
`--fraction` of it over both protocols while the streams continue. Every `--swap-secs` a
new MLP version folder appears and the old one goes; the default version policy (latest
1) makes the server swap. Load generators are processes of their own (bench/soak_load.py).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen import Process
from bench.serve_bench import prepare_mlp, start_aiaas

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "soak"
RESULTS = ROOT / "bench" / "results"
MLP, LLM = "mlp", "tiny"
KINDS = ("rest", "grpc", "llm")
P99_TOLERANCE = 1.5
RSS_TOLERANCE_PCT = 5.0


@dataclass(frozen=True)
class Options:
    minutes: float = 30.0
    fraction: float = 0.8
    swap_secs: float = 60.0
    capacity_secs: float = 20.0
    concurrency: int = 8
    streams: int = 2
    max_tokens: int = 16
    interval_secs: float = 10.0
    warmup_secs: float = 120.0
    poll_secs: float = 1.0
    results: Path = RESULTS
    #: Scratch: the model repository, the server's log, each generator's records and log.
    work: Path = WORK


@dataclass(frozen=True, slots=True)
class Record:
    end: float
    latency_ms: float
    ok: bool
    version: str


@dataclass
class Sample:
    at: float
    rss_mib: float
    threads: int
    fds: int


@dataclass
class Soak:
    """What one run measured; `broken` says why the run itself failed, if it did."""

    options: Options
    capacity: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    start: float = 0.0
    end: float = 0.0
    records: dict[str, list[Record]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    swaps: list[float] = field(default_factory=list)
    broken: str = ""

    def failures(self) -> int:
        return sum(not r.ok for rs in self.records.values() for r in rs)

    def total(self) -> int:
        return sum(len(rs) for rs in self.records.values())

    def versions_seen(self) -> set[str]:
        return {r.version for k in ("rest", "grpc") for r in self.records.get(k, []) if r.ok}


# ---- the model repository and its swaps ------------------------------------------------


def prepare_repository(repo: Path) -> None:
    """The example MLP (serve bench's config: dynamic batching) and the tiny Llama."""
    shutil.rmtree(repo, ignore_errors=True)
    prepare_mlp(repo)
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_llama import write_tiny_llama

    write_tiny_llama(repo, LLM, 1, context_length=256)


def swap_version(repo: Path, current: int) -> int:
    """Version current+1 appears whole (built beside the repository, then renamed in, so
    a poll never sees half a file); then the old folder goes."""
    model = repo / MLP
    staging = repo.parent / f"staging-{current + 1}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copy2(model / str(current) / "model.onnx", staging / "model.onnx")
    staging.rename(model / str(current + 1))
    shutil.rmtree(model / str(current))
    return current + 1


class Swapper(threading.Thread):
    def __init__(self, repo: Path, every_s: float, swaps: list[float]) -> None:
        super().__init__(daemon=True)
        self.repo, self.every_s, self.swaps = repo, every_s, swaps
        self.stopped = threading.Event()
        self.version = 1
        self.error: OSError | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                self.version = swap_version(self.repo, self.version)
            except OSError as error:  # the run is broken; the sampling loop says so
                self.error = error
                return
            self.swaps.append(time.time())


# ---- processes -------------------------------------------------------------------------


def start_load(
    kind: str, url: str, seconds: float, out: Path, **how: float
) -> subprocess.Popen[bytes]:
    model = LLM if kind == "llm" else MLP
    command = [sys.executable, "-m", "bench.soak_load", kind, "--url", url, "--model", model,
               "--out", str(out), "--seconds", str(seconds)]  # fmt: skip
    for key, value in how.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    with open(out.with_suffix(".log"), "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen[bytes], name: str, work: Path, timeout_s: float = 120) -> None:
    try:
        code = process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"load generator {name} hung") from None
    if code != 0:
        raise RuntimeError(f"load generator {name} exited {code}: see {work / name}.log")


@contextlib.contextmanager
def stopping(processes: Iterable[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Whatever breaks, no generator outlives the run (each is ended by its own PID)."""
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def read_records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:  # a line cut short by a killed generator is left out
            records.append(Record(float(parts[0]), float(parts[1]), parts[2] == "1", parts[3]))
    return records


def sample(pid: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(time.time(), rss_kib / 1024, int(fields["Threads"]), fds)


# ---- the run ---------------------------------------------------------------------------


def measure_capacity(soak: Soak, urls: dict[str, str]) -> None:
    """Closed loop, REST and gRPC at once: requests/s each, the first 2 s left out."""
    o = soak.options
    procs = {kind: start_load(kind, urls[kind], o.capacity_secs, o.work / f"capacity-{kind}.txt",
                              concurrency=o.concurrency) for kind in ("rest", "grpc")}  # fmt: skip
    with stopping(procs.values()):
        for kind, process in procs.items():
            finish(process, f"capacity-{kind}", o.work)
    for kind in procs:
        records = read_records(o.work / f"capacity-{kind}.txt")
        if not records:
            raise RuntimeError(f"capacity: no {kind} request finished")
        first = min(r.end for r in records) + 2.0
        counted = [r for r in records if r.end >= first and r.ok]
        span = max(r.end for r in records) - first
        soak.capacity[kind] = len(counted) / span if span > 0 else float(len(counted))
        soak.rates[kind] = soak.capacity[kind] * o.fraction
        failed = sum(not r.ok for r in records)
        print(
            f"  capacity {kind}: {soak.capacity[kind]:.1f} req/s at c={o.concurrency}"
            f" ({failed} failed); soak rate {soak.rates[kind]:.1f} req/s",
            flush=True,
        )


def run_load(soak: Soak, server: Process, urls: dict[str, str], repo: Path) -> None:
    """The open-loop phase with swaps; samples the server every interval."""
    o = soak.options
    seconds = o.minutes * 60
    soak.start = time.time()
    procs = {kind: start_load(kind, urls[kind], seconds, o.work / f"soak-{kind}.txt",
                              rate=soak.rates[kind], concurrency=o.concurrency)
             for kind in ("rest", "grpc")}  # fmt: skip
    swapper = Swapper(repo, o.swap_secs, soak.swaps)
    swapper.start()
    with stopping(procs.values()):
        sample_until(soak, server, swapper, seconds)
        soak.end = soak.start + seconds  # requests still draining count in totals and last p99
        for kind, process in procs.items():
            finish(process, f"soak-{kind}", o.work)


def sample_until(soak: Soak, server: Process, swapper: Swapper, seconds: float) -> None:
    o, pid = soak.options, server.process.pid
    try:
        soak.samples.append(sample(pid))
        while time.time() - soak.start < seconds:
            time.sleep(min(o.interval_secs, max(0.0, soak.start + seconds - time.time())))
            if server.process.poll() is not None:
                raise RuntimeError(f"the server exited ({server.process.returncode})")
            if swapper.error is not None:
                raise RuntimeError(f"a version swap failed: {swapper.error}")
            soak.samples.append(sample(pid))
            last = soak.samples[-1]
            print(
                f"  {last.at - soak.start:6.0f} s  RSS {last.rss_mib:7.1f} MiB  threads"
                f" {last.threads}  fds {last.fds}  swaps {len(soak.swaps)}",
                flush=True,
            )
    finally:
        swapper.stopped.set()
        swapper.join()


def run_soak(options: Options) -> Soak:
    """The whole run. Raises if the run itself breaks (the server or a generator dies);
    a missed target is the caller's verdict, not an error."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = options.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repo = work / "repo"
    prepare_repository(repo)
    soak = Soak(options)
    extra = ["--model-control-mode", "poll", "--repository-poll-secs", str(options.poll_secs)]
    server, port, grpc_port = start_aiaas(repo, work / "server.log", extra)
    http = f"http://127.0.0.1:{port}"
    urls = {"rest": http, "grpc": f"127.0.0.1:{grpc_port}", "llm": http}
    total_s = options.capacity_secs + options.minutes * 60 + 30
    streams = start_load("llm", http, total_s, work / "all-llm.txt",
                         concurrency=options.streams, max_tokens=options.max_tokens)  # fmt: skip
    try:
        print(f"== soak: capacity for {options.capacity_secs:.0f} s", flush=True)
        measure_capacity(soak, urls)
        print(f"== soak: {options.minutes:g} min at {options.fraction:.0%}, a swap every"
              f" {options.swap_secs:g} s", flush=True)  # fmt: skip
        run_load(soak, server, urls, repo)
        if streams.poll() is not None:
            raise RuntimeError(f"the stream generator exited: see {work / 'all-llm.log'}")
    finally:
        if streams.poll() is None:
            streams.terminate()
            streams.wait(30)
        server.stop()
    for kind in ("rest", "grpc"):
        soak.records[kind] = read_records(work / f"soak-{kind}.txt")
    llm = read_records(work / "all-llm.txt")
    soak.records["llm"] = [r for r in llm if r.end >= soak.start]
    return soak


# ---- figures ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def window(soak: Soak, kinds: tuple[str, ...], lo: float, hi: float) -> list[Record]:
    """Records of `kinds` that ended between lo and hi seconds into the soak."""
    return [r for k in kinds for r in soak.records.get(k, [])
            if lo <= r.end - soak.start < hi]  # fmt: skip


def intervals(soak: Soak) -> list[dict[str, Any]]:
    """One row per interval: (requests/s, p50, p99, failed) per kind, and the server sample
    nearest its end. Records are bucketed in one pass: a full run holds millions."""
    step = soak.options.interval_secs
    count = max(1, math.ceil((soak.end - soak.start) / step - 1e-6))
    buckets: dict[str, list[list[Record]]] = {k: [[] for _ in range(count)] for k in KINDS}
    for kind in KINDS:
        for record in soak.records.get(kind, []):
            index = int((record.end - soak.start) // step)
            if 0 <= index < count:
                buckets[kind][index].append(record)
    rows = []
    for index in range(count):
        at = (index + 1) * step
        row: dict[str, Any] = {"t": at}
        for kind in KINDS:
            records = buckets[kind][index]
            latencies = [r.latency_ms for r in records if r.ok]
            row[kind] = (len(records) / step, percentile(latencies, 50),
                         percentile(latencies, 99), sum(not r.ok for r in records))  # fmt: skip
        row["sample"] = min(soak.samples, key=lambda s: abs(s.at - soak.start - at))
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Verdict:
    warmup_s: float
    span_s: float
    rss_warm: float
    rss_end: float
    p99_first: float
    p99_last: float

    @property
    def rss_growth_pct(self) -> float:
        return (self.rss_end - self.rss_warm) / self.rss_warm * 100

    @property
    def p99_ratio(self) -> float:
        return self.p99_last / self.p99_first


def verdict(soak: Soak) -> Verdict:
    """Warm-up is `warmup_secs` (2 min), or a quarter of a shorter run; p99 compares the
    first and last 5 minutes after it (halves of what is left, if that is shorter)."""
    length = soak.end - soak.start
    warmup = min(soak.options.warmup_secs, length / 4)
    span = min(300.0, (length - warmup) / 2)
    warm = min(soak.samples, key=lambda s: abs(s.at - soak.start - warmup))
    mlp = ("rest", "grpc")
    first = [r.latency_ms for r in window(soak, mlp, warmup, warmup + span) if r.ok]
    last = [r.latency_ms for r in window(soak, mlp, length - span, float("inf")) if r.ok]
    return Verdict(warmup, span, warm.rss_mib, soak.samples[-1].rss_mib,
                   percentile(first, 99), percentile(last, 99))  # fmt: skip


def targets(soak: Soak, v: Verdict) -> list[tuple[str, bool, str]]:
    failures = soak.failures()
    return [
        ("zero failed requests", failures == 0, f"{failures} of {soak.total()}"),
        (f"RSS growth after warm-up < {RSS_TOLERANCE_PCT:g}%", v.rss_growth_pct < RSS_TOLERANCE_PCT,
         f"{v.rss_warm:.1f} -> {v.rss_end:.1f} MiB ({v.rss_growth_pct:+.1f}%)"),
        (f"p99 stable (last within {P99_TOLERANCE}x of first)", v.p99_ratio <= P99_TOLERANCE,
         f"{v.p99_first:.1f} -> {v.p99_last:.1f} ms ({v.p99_ratio:.2f}x)"),
    ]  # fmt: skip


def report(soak: Soak) -> str:
    o, v = soak.options, verdict(soak)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores: {o.minutes:g} min"
        f" at {o.fraction:.0%} of capacity, an MLP version swap every {o.swap_secs:g} s"
        f" ({len(soak.swaps)} swaps, versions answered: {len(soak.versions_seen())}).",
        f"Capacity (closed loop, c={o.concurrency} each, {o.capacity_secs:g} s, with"
        f" {o.streams} language-model streams running): "
        + ", ".join(f"{k} {soak.capacity[k]:.1f} req/s" for k in soak.capacity)
        + "; soak rates: " + ", ".join(f"{k} {soak.rates[k]:.1f} req/s" for k in soak.rates)
        + f"; plus {o.streams} closed-loop `/v1/completions` streams of {o.max_tokens} tokens"
        " (tiny random Llama).",
        "",
        "| target | met | figures |",
        "|---|---|---|",
        *(f"| {name} | {'yes' if ok else 'MISSED'} | {figures} |"
          for name, ok, figures in targets(soak, v)),
        "",
        f"Total requests {soak.total()}, failed {soak.failures()}. Warm-up {v.warmup_s:.0f} s;"
        f" p99 windows {v.span_s:.0f} s (MLP, REST and gRPC together).",
        "",
        "| t s | REST req/s | REST p50/p99 ms | gRPC req/s | gRPC p50/p99 ms | LLM streams/s"
        " | LLM p99 ms | failed | RSS MiB | threads | fds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in intervals(soak):
        (rr, r50, r99, rf), (gr, g50, g99, gf), (lr, _, l99, lf) = (row[k] for k in KINDS)
        s = row["sample"]
        lines.append(f"| {row['t']:.0f} | {rr:.1f} | {r50:.1f}/{r99:.1f} | {gr:.1f} |"
                     f" {g50:.1f}/{g99:.1f} | {lr:.2f} | {l99:.0f} | {rf + gf + lf} |"
                     f" {s.rss_mib:.1f} | {s.threads} | {s.fds} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(soak: Soak, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = intervals(soak)
    minutes = [row["t"] / 60 for row in rows]
    figure, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    for kind, label in (("rest", "MLP REST"), ("grpc", "MLP gRPC"), ("llm", "LLM streams")):
        top.plot(minutes, [row[kind][0] for row in rows], label=label)
        middle.plot(minutes, [row[kind][2] for row in rows], label=label)
    top.set_ylabel("requests/s")
    middle.set_ylabel("p99 ms")
    middle.set_yscale("log")
    bottom.plot([(s.at - soak.start) / 60 for s in soak.samples],
                [s.rss_mib for s in soak.samples], color="black")  # fmt: skip
    bottom.set_ylabel("server RSS MiB")
    bottom.set_xlabel("minutes")
    for swap in soak.swaps:
        for axis in (top, middle, bottom):
            axis.axvline((swap - soak.start) / 60, color="grey", alpha=0.2, linewidth=0.8)
    top.legend(loc="lower right")
    top.set_title("aiaas soak: throughput, p99 and RSS (grey lines: MLP version swaps)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench soak")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fraction", type=float, default=0.8)
    parser.add_argument("--swap-secs", type=float, default=60.0)
    parser.add_argument("--capacity-secs", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--streams", type=int, default=2)
    args = parser.parse_args(argv)
    return Options(minutes=args.minutes, fraction=args.fraction, swap_secs=args.swap_secs,
                   capacity_secs=args.capacity_secs, concurrency=args.concurrency,
                   streams=args.streams)  # fmt: skip


def main(argv: list[str]) -> None:
    options = parse(argv)
    try:
        soak = run_soak(options)
    except RuntimeError as error:
        raise SystemExit(f"soak run broke: {error}") from None
    except KeyboardInterrupt:  # the server and generators were stopped on the way out
        raise SystemExit("soak interrupted: no results written") from None
    options.results.mkdir(parents=True, exist_ok=True)
    text = report(soak)
    (options.results / "soak.md").write_text(text)
    plot(soak, options.results / "soak.png")
    print("\n" + text)
    for name, ok, figures in targets(soak, verdict(soak)):
        print(f"{'met   ' if ok else 'MISSED'} {name}: {figures}")
