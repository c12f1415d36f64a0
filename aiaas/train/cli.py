"""`aiaas train`: check the job, then hand it to the elastic launcher.

This module imports typer only; torch is imported when the command runs, so
that registering it in `aiaas.cli` costs `aiaas serve` nothing. Every mistake
that can be found without training is reported here as one `error:` line with
exit code 2, before a single worker exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from aiaas.exit_codes import ExitCode, fail
from aiaas.train.config import OptimizerName, Precision, Schedule, Strategy

_FLAG_KEYS = {
    "model": "model.factory",
    "dataset": "data.dataset",
    "loss": "training.loss",
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "schedule": "optimizer.schedule",
    "steps": "training.steps",
    "epochs": "training.epochs",
    "global_batch_size": "training.global_batch_size",
    "grad_accumulation": "training.grad_accumulation",
    "precision": "training.precision",
    "seed": "training.seed",
    "stop_at_step": "training.stop_at_step",
    "strategy": "parallel.strategy",
    "nproc": "parallel.nproc",
    "nnodes": "parallel.nnodes",
    "node_rank": "parallel.node_rank",
    "rdzv_endpoint": "parallel.rdzv_endpoint",
    "rdzv_id": "parallel.rdzv_id",
    "max_restarts": "parallel.max_restarts",
    "checkpoint_every": "checkpoint.every_steps",
    "run_dir": "run_dir",
    "name": "name",
    "export": "export.enabled",
    "registry_uri": "export.registry_uri",
}

Opt = typer.Option


def train(
    spec: Annotated[
        Path | None, typer.Argument(help="SPEC file (TOML).", show_default=False)
    ] = None,
    model: Annotated[str | None, Opt(help="Model factory, module:function.")] = None,
    dataset: Annotated[str | None, Opt(help="Dataset factory (module:function) or .npz.")] = None,
    loss: Annotated[str | None, Opt(help="cross_entropy | mse | module:function.")] = None,
    optimizer: Annotated[OptimizerName | None, Opt(help="Optimizer.")] = None,
    lr: Annotated[float | None, Opt(help="Peak learning rate.")] = None,
    schedule: Annotated[Schedule | None, Opt(help="Learning-rate schedule.")] = None,
    steps: Annotated[int | None, Opt(help="Optimizer steps in the whole run.")] = None,
    epochs: Annotated[int | None, Opt(help="Epochs, instead of --steps.")] = None,
    global_batch_size: Annotated[int | None, Opt(help="Samples per step, all workers.")] = None,
    grad_accumulation: Annotated[int | None, Opt(help="Micro-batches per step.")] = None,
    precision: Annotated[Precision | None, Opt(help="Training precision.")] = None,
    seed: Annotated[int | None, Opt()] = None,
    strategy: Annotated[Strategy | None, Opt(help="Data parallelism.")] = None,
    nproc: Annotated[int | None, Opt("--nproc", help="Workers on this node.")] = None,
    nnodes: Annotated[str | None, Opt(help="N or MIN:MAX nodes (elastic).")] = None,
    node_rank: Annotated[int | None, Opt(help="This node's rank (0 hosts).")] = None,
    rdzv_endpoint: Annotated[str | None, Opt(help="host:port of the rendezvous.")] = None,
    rdzv_id: Annotated[str | None, Opt(help="Job id shared by all nodes.")] = None,
    max_restarts: Annotated[int | None, Opt(help="Group restarts after a failure.")] = None,
    checkpoint_every: Annotated[int | None, Opt(help="Checkpoint every N steps.")] = None,
    run_dir: Annotated[str | None, Opt(help="Run directory, default runs/NAME.")] = None,
    name: Annotated[str | None, Opt(help="Run and model name, default the SPEC stem.")] = None,
    resume: Annotated[bool, Opt("--resume", help="Continue from the latest checkpoint.")] = False,
    stop_at_step: Annotated[int | None, Opt(help="Checkpoint and stop at this step.")] = None,
    export: Annotated[bool | None, Opt("--export/--no-export", help="Export ONNX.")] = None,
    registry_uri: Annotated[
        str | None, Opt(help="Register the model here (or env AIAAS_REGISTRY_URI).")
    ] = None,
    set_: Annotated[
        list[str] | None, Opt("--set", help="Any SPEC key: --set optimizer.weight_decay=0.01")
    ] = None,
) -> None:
    """Train a model with DDP or FSDP on torchrun's elastic launcher; export it at the end."""
    flags = dict(locals())
    from aiaas.train.config import ConfigError
    from aiaas.train.spec import format_override, load_job_config, parse_override

    try:
        overrides = _overrides(flags, parse_override)
        job = load_job_config(spec, overrides)
        from aiaas.train.launch import Interrupted, TrainingFailed, check_can_start, launch

        check_can_start(job)
    except ConfigError as error:
        raise fail(str(error), ExitCode.BAD_INPUT) from None
    worker_args = [str(spec) if spec is not None else "-"]
    for key, value in overrides:
        worker_args += ["--set", format_override(key, value)]
    try:
        launch(job, worker_args)
    except TrainingFailed as error:
        code = ExitCode.BAD_INPUT if error.exit_code == 2 else ExitCode.FAILED
        raise fail(str(error), code) from None
    except Interrupted as error:
        raise fail(str(error), ExitCode.INTERRUPTED) from None
    _summarize(Path(job.run_path))


def _overrides(flags: dict[str, Any], parse: Any) -> list[tuple[str, Any]]:
    """Flags beat the environment, which beats the SPEC."""
    overrides: list[tuple[str, Any]] = []
    if flags["registry_uri"] is None and os.environ.get("AIAAS_REGISTRY_URI"):
        overrides.append(("export.registry_uri", os.environ["AIAAS_REGISTRY_URI"]))
    overrides += [(key, flags[flag]) for flag, key in _FLAG_KEYS.items() if flags[flag] is not None]
    if flags["resume"]:
        overrides.append(("checkpoint.resume", True))
    overrides += [parse(text) for text in flags["set_"] or []]
    return overrides


def _summarize(run_dir: Path) -> None:
    published = run_dir / "final" / "publish.json"
    typer.echo(f"run directory: {run_dir}")
    if not published.is_file():
        return
    outcome = json.loads(published.read_text())
    if "error" in outcome:
        raise fail(f"training finished but export failed: {outcome['error']}", ExitCode.FAILED)
    for key, value in outcome.items():
        typer.echo(f"{key}: {value}")
