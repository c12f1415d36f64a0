"""One training process: `python -m aiaas.train.worker SPEC [--set KEY=VALUE ...]`.

`aiaas train` starts these through torch's elastic launcher on one machine; on
many machines run the same module under torchrun on every node::

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --nnodes 2 --nproc-per-node 4 \\
        --rdzv-backend c10d --rdzv-endpoint head:29400 --rdzv-id job1 --max-restarts 3 \\
        -m aiaas.train.worker spec.toml --set parallel.strategy=fsdp

Workers per node, nodes and rendezvous come from torchrun's environment, not from
the SPEC's `[parallel]` table (its `strategy` still applies). Exit codes: 0 done,
2 bad configuration (one `error:` line on stderr), 130 stopped by Ctrl-C.
"""

# The Ctrl-C handler is installed before torch is imported (seconds), hence imports below it.
# ruff: noqa: E402
from __future__ import annotations

import os
import signal
from types import FrameType

#: A SIGINT came (Ctrl-C, passed on by the agent); `_running`: main() is under way.
_interrupted = False
_running = False


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C ends a worker quietly at any moment; the launcher says where training stopped.

    During main() it is one KeyboardInterrupt, so the progress display gives the terminal
    back; whatever that interrupts is not reported (torch's DCP, for one, wraps it in a
    CheckpointException). Before and after main() there is nothing to undo. Later SIGINTs
    are ignored, so the stop itself is never interrupted.
    """
    global _interrupted
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _interrupted = True
    if _running:
        raise KeyboardInterrupt
    os._exit(130)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _on_interrupt)

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from aiaas.train.config import ConfigError, JobConfig
from aiaas.train.data import fingerprint, load_dataset
from aiaas.train.loop import TrainResult, train
from aiaas.train.parallel import ProcessGrid, init_distributed
from aiaas.train.rundir import RunDir, write_json


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m aiaas.train.worker")
    parser.add_argument("spec", help="SPEC file, or - for none (everything from --set)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def grid_overrides() -> list[tuple[str, Any]]:
    """The SPEC's process grid replaced by the one torchrun actually formed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return [("parallel.nproc", local), ("parallel.nnodes", str(max(1, world // local)))]


def load(argv: list[str] | None) -> tuple[JobConfig, Path | None]:
    from aiaas.train.spec import load_job_config, parse_override

    args = parse_args(argv)
    spec = None if args.spec == "-" else Path(args.spec)
    overrides = [parse_override(text) for text in args.set] + grid_overrides()
    return load_job_config(spec, overrides), spec


@record
def main(argv: list[str] | None = None) -> int:
    try:
        job, spec = load(argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    grid = init_distributed()
    _warn_about_shared_store(grid)
    try:
        return _run(job, spec, grid, RunDir(Path(job.run_path)))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _warn_about_shared_store(grid: ProcessGrid) -> None:
    """Under plain torchrun, restarts can hang on stale store keys (torch issue #135712)."""
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if grid.is_main and shared and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0:
        print(
            "warning: set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun on every node; "
            "restarted workers may otherwise hang in init (torch issue #135712)",
            file=sys.stderr,
        )


def exit_now(code: int) -> NoReturn:
    """Leave without tearing the process group down.

    Destroying a gloo group (explicitly, or when DDP's reducer is collected at
    exit) joins gloo's threads while holding the GIL, and a gloo thread that is
    still releasing a finished collective's tensors needs the GIL: the worker
    then hangs after finishing (or aborts with SIGABRT during interpreter
    shutdown), and the agent waits for it forever. Every file a worker writes is
    closed before this point, so skipping finalization loses nothing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(job: JobConfig, spec: Path | None, grid: ProcessGrid, run: RunDir) -> int:
    if grid.restart_count == 0 and not job.checkpoint.resume and run.has_checkpoint():
        raise ConfigError("", f"{run.root} already holds checkpoints; pass --resume")
    base = spec.parent if spec is not None else Path.cwd()
    if grid.is_main:
        info = run.start(spec=spec, config=job.to_dict(), name=job.name)
        if "dataset_fingerprint" not in info:
            dataset = load_dataset(job.data.dataset, job.data.kwargs, base)
            run.update_info(dataset_fingerprint=fingerprint(dataset, job.data.dataset, base))
    dist.barrier()
    result = train(job, grid, run, base)
    dist.barrier()  # every rank's checkpoint shards are written before anyone leaves
    if grid.is_main:
        _finish(job, run, result, base)
    return 0


def _finish(job: JobConfig, run: RunDir, result: TrainResult, base: Path) -> None:
    """Rank 0, after the group is gone: keep the full weights, then export and register."""
    if not result.finished:
        print(f"stopped at step {int(result.metrics['steps'])}; continue with --resume", flush=True)
        return
    if result.resumed_from == int(result.metrics["steps"]) and _already_finished(job, run):
        # Resuming a finished run must not export and register the same model again.
        print(f"the run already finished at step {result.resumed_from}; nothing to do", flush=True)
        return
    run.final.mkdir(parents=True, exist_ok=True)
    torch.save(result.state_dict, run.final / "model.pt")
    write_json(run.final / "metrics.json", result.metrics)
    print("final " + "  ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()), flush=True)
    if not job.export.enabled:
        return
    from aiaas.train.publish import publish

    try:
        outcome = publish(job, run, result, base)
    except Exception as error:  # the trained model is safe on disk: report, do not fail
        traceback.print_exc()
        outcome = {"error": f"{type(error).__name__}: {error}"}
    write_json(run.final / "publish.json", outcome)


def _already_finished(job: JobConfig, run: RunDir) -> bool:
    """The final model is saved and, if asked for, exported (a failed export is retried)."""
    if not (run.final / "model.pt").is_file():
        return False
    published = run.final / "publish.json"
    if not job.export.enabled:
        return True
    return published.is_file() and "error" not in json.loads(published.read_text())


if __name__ == "__main__":
    try:
        _running = True
        exit_code = main() or 0
    except BaseException:
        if _interrupted:
            exit_code = 130
        else:  # `record` has written the error file for the agent
            traceback.print_exc()
            exit_code = 1
    finally:
        _running = False
    exit_now(exit_code)
