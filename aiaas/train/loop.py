"""The training loop, written to be read top to bottom.

Setup (seed, model, parallelism, optimizer, schedule), resume if there is
something to resume, then: step, log, checkpoint, until the last step; then
evaluate and gather the full model for export.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from aiaas.train.checkpoint import CheckpointManager, TrainingState
from aiaas.train.components import (
    LossFn,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
)
from aiaas.train.config import ConfigError, JobConfig
from aiaas.train.data import GlobalBatchSampler, eval_shard, fetch, load_dataset
from aiaas.train.parallel import (
    ProcessGrid,
    all_reduce_sum,
    apply_ddp,
    apply_fsdp,
    gradient_sync,
    unwrap,
)
from aiaas.train.progress import Reporter
from aiaas.train.rundir import RunDir

# Test hook: "RANK:STEP" makes that rank SIGKILL itself before STEP on the first attempt.
FAULT_ENV = "AIAAS_TRAIN_FAULT_INJECT"


@dataclass
class TrainResult:
    """What the run produced: final metrics, and the full state dict on rank 0."""

    metrics: dict[str, float] = field(default_factory=dict)
    state_dict: dict[str, Any] = field(default_factory=dict)
    resumed_from: int | None = None
    finished: bool = False


def train(job: JobConfig, grid: ProcessGrid, run: RunDir, base: Path) -> TrainResult:
    """Train to `training.steps` (or `stop_at_step`); every rank calls this, rank 0 reports."""
    torch.manual_seed(job.training.seed)  # same on every rank: same init, world-size-independent
    model, autocast = parallelize(build_model(job.model).to(grid.device), job, grid)
    dataset = load_dataset(job.data.dataset, job.data.kwargs, base)
    sampler = make_sampler(job, grid, len(dataset))  # type: ignore[arg-type]
    total_steps = job.training.steps or job.training.epochs * sampler.steps_per_epoch
    stop_step = min(job.training.stop_at_step or total_steps, total_steps)
    optimizer = build_optimizer(model, job.optimizer)
    scheduler = build_scheduler(optimizer, job.optimizer, total_steps)
    state = TrainingState(model=model, optimizer=optimizer, scheduler=scheduler)
    loss_fn = build_loss(job.training.loss)

    result = TrainResult()
    checkpoints = CheckpointManager(run.checkpoints, grid, job.checkpoint.keep_last)
    if job.checkpoint.resume or grid.restart_count > 0:
        result.resumed_from = checkpoints.load_latest(state)
    start_step = state.step
    reporter = Reporter(
        run if grid.is_main else None,
        total_steps=total_steps,
        start_step=start_step,
        attempt=grid.restart_count,
    )
    if grid.is_main and grid.restart_count > 0:
        run.record_restart(grid.restart_count, result.resumed_from)
        reporter.say(f"elastic restart {grid.restart_count} of the worker group")
    if result.resumed_from is not None:
        reporter.say(f"resumed from the checkpoint of step {result.resumed_from}")
    reporter.event("start", start_step=start_step, stop_step=stop_step, total_steps=total_steps)
    reporter.say(
        f"{job.name}: {grid.world_size} worker(s), {job.parallel.strategy}, steps "
        f"{start_step}->{stop_step} of {total_steps}, micro-batch {sampler.micro_batch_size}"
        f" x {job.training.grad_accumulation} accumulation"
    )

    model.train()
    log_every = job.training.log_every
    interval_loss = torch.zeros((), device=grid.device)  # summed on device: no sync per step
    interval_steps, interval_start = 0, time.perf_counter()
    started = time.perf_counter()
    with reporter:
        for step, micro_batches in sampler.iterate(start_step, stop_step):
            _maybe_inject_fault(step, grid)
            batches = [fetch(dataset, indices) for indices in micro_batches]
            interval_loss += train_step(model, loss_fn, batches, autocast, grid.device)
            _clip_gradients(model, job.training.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            state.step, interval_steps = step + 1, interval_steps + 1

            if state.step % log_every == 0 or state.step == stop_step:
                (loss_sum,) = all_reduce_sum([float(interval_loss)], grid)
                seconds = time.perf_counter() - interval_start
                result.metrics["train_loss"] = loss_sum / grid.world_size / interval_steps
                samples = interval_steps * job.training.global_batch_size
                lr = float(scheduler.get_last_lr()[0])
                reporter.step(
                    state.step, result.metrics["train_loss"], interval_steps, samples, seconds, lr
                )
                interval_loss, interval_steps = torch.zeros_like(interval_loss), 0
                interval_start = time.perf_counter()

            every = job.checkpoint.every_steps
            if (every and state.step % every == 0) or state.step == stop_step:
                seconds = checkpoints.save(state)
                reporter.event("checkpoint", step=state.step, seconds=seconds)
                reporter.log_only(f"checkpoint step {state.step} in {seconds:.3f}s")
                interval_start += seconds  # step throughput excludes checkpoint time

    elapsed = time.perf_counter() - started
    trained = state.step - start_step
    result.metrics |= {
        "steps": float(state.step),
        "samples_per_s": trained * job.training.global_batch_size / elapsed if trained else 0.0,
    }
    result.finished = state.step == total_steps
    if result.finished:
        result.metrics |= evaluate(model, job, grid, loss_fn, autocast, base)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    result.state_dict = get_model_state_dict(model, options=options)  # collective for FSDP
    return result


def parallelize(
    model: nn.Module, job: JobConfig, grid: ProcessGrid
) -> tuple[nn.Module, AbstractContextManager[Any]]:
    """The wrapped model, and the autocast context its forward runs in.

    bf16 follows torchtitan: FSDP casts parameters itself (mixed-precision policy,
    gradients reduced in fp32); DDP keeps fp32 parameters under autocast.
    """
    bf16 = job.training.precision == "bf16"
    if job.parallel.strategy == "fsdp":
        return apply_fsdp(model, grid, param_dtype=torch.bfloat16 if bf16 else None), nullcontext()
    autocast = torch.autocast(grid.device.type, dtype=torch.bfloat16, enabled=bf16)
    return apply_ddp(model, grid), autocast


def make_sampler(job: JobConfig, grid: ProcessGrid, dataset_size: int) -> GlobalBatchSampler:
    sampler = GlobalBatchSampler(
        dataset_size=dataset_size,
        global_batch_size=job.training.global_batch_size,
        world_size=grid.world_size,
        rank=grid.rank,
        grad_accumulation=job.training.grad_accumulation,
        seed=job.training.seed,
    )
    if sampler.steps_per_epoch == 0:
        raise ConfigError(
            "training.global_batch_size",
            f"{job.training.global_batch_size} exceeds the dataset's {dataset_size} samples",
        )
    return sampler


def train_step(
    model: nn.Module,
    loss_fn: LossFn,
    batches: list[Any],
    autocast: AbstractContextManager[Any],
    device: torch.device,
) -> torch.Tensor:
    """Forward and backward over the accumulation rounds; the caller steps the optimizer.

    Each round's loss is a mean over an equal-sized micro-batch, divided by the
    rounds: summed over rounds and averaged over workers, that is the mean over
    the global batch.
    """
    rounds = len(batches)
    total = torch.zeros((), device=device)
    for index, (inputs, targets) in enumerate(batches):
        with gradient_sync(model, enabled=index == rounds - 1):
            with autocast:
                outputs = model(inputs.to(device))
            loss = loss_fn(outputs, targets.to(device)) / rounds
            loss.backward()  # type: ignore[no-untyped-call]
        total += loss.detach()
    return total


def _clip_gradients(model: nn.Module, max_norm: float) -> None:
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    job: JobConfig,
    grid: ProcessGrid,
    loss_fn: LossFn,
    autocast: AbstractContextManager[Any],
    base: Path,
) -> dict[str, float]:
    """Loss (and accuracy, for class labels) over the evaluation set, each sample once.

    Every rank runs the same number of forward passes (FSDP gathers parameters in
    each), padding its shard at the end and not counting the padding.
    """
    if not job.data.eval_dataset:
        return {}
    dataset = load_dataset(job.data.eval_dataset, job.data.eval_kwargs, base)
    size = len(dataset)  # type: ignore[arg-type]
    shard = list(eval_shard(size, grid.rank, grid.world_size))
    padded = len(eval_shard(size, 0, grid.world_size))
    batch = max(1, job.micro_batch_size(grid.world_size))
    forward = model if job.parallel.strategy == "fsdp" else unwrap(model)
    model.eval()
    loss_sum, correct, count, labels = 0.0, 0.0, 0.0, 0.0
    for start in range(0, padded, batch):
        real = shard[start : start + batch]
        indices = real + [shard[0] if shard else 0] * (min(batch, padded - start) - len(real))
        inputs, targets = fetch(dataset, indices)
        with autocast:
            outputs = forward(inputs.to(grid.device))
        if not real:
            continue
        outputs, targets = outputs[: len(real)], targets[: len(real)].to(grid.device)
        loss_sum += float(loss_fn(outputs, targets)) * len(real)
        count += len(real)
        if not targets.is_floating_point() and outputs.shape[:-1] == targets.shape:
            correct += float((outputs.argmax(dim=-1) == targets).sum())
            labels += targets.numel()
    model.train()
    loss_sum, correct, count, labels = all_reduce_sum([loss_sum, correct, count, labels], grid)
    metrics = {"eval_loss": loss_sum / max(count, 1.0)}
    if labels:
        metrics["eval_accuracy"] = correct / labels
    return metrics


def _maybe_inject_fault(step: int, grid: ProcessGrid) -> None:
    """Die like a lost machine would (SIGKILL, no cleanup), only on the first attempt."""
    target = os.environ.get(FAULT_ENV)
    if not target or grid.restart_count > 0:
        return
    rank, _, at_step = target.partition(":")
    if int(rank) == grid.rank and int(at_step) == step:
        os.kill(os.getpid(), signal.SIGKILL)
