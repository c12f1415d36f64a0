"""Training throughput of `aiaas train`: 1 vs 2 workers, DDP vs FSDP, and checkpoint cost.

Usage: .venv/bin/python bench/train_bench.py [--repeats 2] [--steps 30]

Every configuration runs through the real CLI (elastic launcher, gloo, DCP) on
two workloads: a compute-bound MLP (4 x 2048 wide, 13.6 M parameters) and a
small causal transformer. Throughput is samples/s of the fastest step after
warm-up (read from the run's metrics.jsonl: other people's work on a shared
machine only ever slows steps down); checkpoint cost is the median DCP save
time against that step time. Configurations are
interleaved and repeated, and the table reports ratios to the 1-worker DDP
baseline measured in the same round, so a neighbour's load shifts both alike.
Writes bench/results/train.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "train.md"
WARMUP_STEPS = 3

WORKLOADS = {
    "mlp": """
[model]
factory = "aiaas.train.examples:wide_mlp"
[data]
dataset = "aiaas.train.examples:random_classification"
kwargs = { samples = 8192 }
[training]
global_batch_size = 128
""",
    "transformer": """
[model]
factory = "aiaas.train.examples:tiny_transformer"
kwargs = { width = 192, depth = 3, heads = 4, max_length = 64 }
[data]
dataset = "aiaas.train.examples:token_sequences"
kwargs = { samples = 4096, length = 64 }
[training]
global_batch_size = 32
""",
}
CONFIGS = [
    ("1 worker, DDP", 1, "ddp"),
    ("2 workers, DDP", 2, "ddp"),
    ("2 workers, FSDP", 2, "fsdp"),
]


def run(spec: Path, run_dir: Path, steps: int, nproc: int, strategy: str) -> dict[str, float]:
    every = max(1, steps // 3)
    command = [
        sys.executable, "-m", "aiaas.cli", "train", str(spec), "--run-dir", str(run_dir),
        "--nproc", str(nproc), "--strategy", strategy, "--steps", str(steps),
        "--checkpoint-every", str(every), "--no-export",
        "--set", "training.log_every=1", "--set", "optimizer.lr=0.0003",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)  # the launcher splits the cores among workers
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps_ = [r for r in records if r["event"] == "train" and r["step"] > WARMUP_STEPS]
    saves = [r["seconds"] for r in records if r["event"] == "checkpoint"]
    # The fastest step, as timeit does: a neighbour's load only ever slows a step down.
    fastest = min(steps_, key=lambda r: r["step_s"])
    return {
        "samples_per_s": fastest["samples_per_s"],
        "step_s": fastest["step_s"],
        "checkpoint_s": statistics.median(saves),
        "checkpoint_every": every,
    }


def measure(repeats: int, steps: int, workdir: Path) -> dict[tuple[str, str], list[dict]]:
    results: dict[tuple[str, str], list[dict]] = {}
    for round_ in range(repeats):
        for workload, text in WORKLOADS.items():
            spec = workdir / f"{workload}.toml"
            spec.write_text(text)
            for label, nproc, strategy in CONFIGS:
                run_dir = workdir / f"{workload}-{nproc}-{strategy}-{round_}"
                figures = run(spec, run_dir, steps, nproc, strategy)
                results.setdefault((workload, label), []).append(figures)
                print(f"round {round_} {workload:12s} {label:16s} {figures}", flush=True)
    return results


def table(results: dict[tuple[str, str], list[dict]]) -> list[str]:
    lines = [
        "| workload | configuration | samples/s | vs 1 worker (same round) | step ms "
        "| checkpoint ms | checkpoint / step | amortised overhead |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        baseline = results[(workload, CONFIGS[0][0])]
        for label, _, _ in CONFIGS:
            rounds = results[(workload, label)]
            ratios = [
                r["samples_per_s"] / b["samples_per_s"]
                for r, b in zip(rounds, baseline, strict=True)
            ]
            rate = statistics.median(r["samples_per_s"] for r in rounds)
            step = statistics.median(r["step_s"] for r in rounds)
            save = statistics.median(r["checkpoint_s"] for r in rounds)
            every = rounds[0]["checkpoint_every"]
            lines.append(
                f"| {workload} | {label} | {rate:,.0f} | {statistics.median(ratios):.2f}x "
                f"| {step * 1e3:.1f} | {save * 1e3:.1f} | {save / step:.0%} "
                f"| {save / (every * step):.1%} every {every} steps |"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="aiaas-train-bench-") as workdir:
        results = measure(args.repeats, args.steps, Path(workdir))
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, gloo on CPU"
    )
    lines = [
        "# aiaas train: throughput and checkpoint cost",
        "",
        f"Measured by `bench/train_bench.py --repeats {args.repeats} --steps {args.steps}` on "
        f"{machine}; {time.time() - started:.0f} s in all. Fastest step after the first "
        f"{WARMUP_STEPS} of each run; medians over {args.repeats} interleaved rounds.",
        "",
        *table(results),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    notes = RESULTS.read_text().split("\n## Reading these figures", 1) if RESULTS.exists() else []
    RESULTS.write_text(text + ("\n## Reading these figures" + notes[1] if len(notes) == 2 else ""))


if __name__ == "__main__":
    main()
