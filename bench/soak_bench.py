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
This module runs the soak; bench/soak_report.py turns what it measured into the report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.loadgen import Process
from bench.serve_bench import prepare_mlp, start_aiaas
from bench.soak_records import ROOT, Options, Sample, Soak, read_records
from bench.soak_report import write_results

MLP, LLM = "mlp", "tiny"


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
    write_results(soak)
