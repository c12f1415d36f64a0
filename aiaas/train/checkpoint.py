"""Sharded, atomic checkpoints with `torch.distributed.checkpoint` (DCP).

Layout under the run directory::

    checkpoints/step-00000040/   one DCP checkpoint: a .distcp file per rank + .metadata
    checkpoints/latest           "step-00000040", written only after that directory is whole

Every rank writes its shards into `.tmp-step-N`; once DCP's metadata is written
(which implies all ranks finished), rank 0 renames the directory and only then
replaces the `latest` marker. A crash at any point leaves either the previous
checkpoint or the new one as `latest`, never a partial one. DCP stores tensors
by fully qualified name and global shape, so a checkpoint written by N workers
loads into M workers, sharded or not.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.distributed.checkpoint.stateful import Stateful

from aiaas.train.parallel import ProcessGrid

LATEST = "latest"
_PREFIX = "step-"
_TMP_PREFIX = ".tmp-"


@dataclass
class TrainingState(Stateful):
    """Everything a run needs to continue exactly where it stopped.

    The sampler's position is the step itself (see `data.GlobalBatchSampler`). The
    RNG state is the same on every rank, because every rank seeds alike so that
    results do not depend on the number of workers; rank 0's copy is saved.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0

    def state_dict(self) -> dict[str, Any]:
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        return {
            "model": model_state,
            "optimizer": optimizer_state,
            "scheduler": self.scheduler.state_dict(),
            "progress": {"step": self.step, "rng": torch.get_rng_state()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=state_dict["model"],
            optim_state_dict=state_dict["optimizer"],
        )
        self.scheduler.load_state_dict(state_dict["scheduler"])
        self.step = int(state_dict["progress"]["step"])
        torch.set_rng_state(state_dict["progress"]["rng"])


def step_dir_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint the `latest` marker names, if it and the directory are both complete."""
    marker = root / LATEST
    if not marker.is_file():
        return None
    path = root / marker.read_text().strip()
    return path if (path / ".metadata").is_file() else None


def checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix(_PREFIX))


class CheckpointManager:
    """Saves and loads `TrainingState` under `root`; every method is collective."""

    def __init__(self, root: Path, grid: ProcessGrid, keep_last: int) -> None:
        self.root = root
        self.grid = grid
        self.keep_last = keep_last
        if grid.is_main:
            root.mkdir(parents=True, exist_ok=True)
            for stale in root.glob(_TMP_PREFIX + "*"):  # left by a run killed mid-save
                shutil.rmtree(stale, ignore_errors=True)
        _barrier()

    def save(self, state: TrainingState) -> float:
        """Write a checkpoint for `state.step`; returns the seconds it took."""
        started = time.perf_counter()
        name = step_dir_name(state.step)
        staging = self.root / (_TMP_PREFIX + name)
        dcp_save({"train": state}, checkpoint_id=str(staging))
        _barrier()
        if self.grid.is_main:
            final = self.root / name
            if final.exists():  # the same step again, after a resume that saved nothing new
                shutil.rmtree(final)
            os.replace(staging, final)
            _write_atomically(self.root / LATEST, name)
            self._prune()
        _barrier()
        return time.perf_counter() - started

    def load_latest(self, state: TrainingState) -> int | None:
        """Restore the newest complete checkpoint into `state`; its step, or None if none."""
        path = latest_checkpoint(self.root)
        if path is None:
            return None
        dcp_load({"train": state}, checkpoint_id=str(path))
        return state.step

    def _prune(self) -> None:
        complete = sorted(self.root.glob(_PREFIX + "*"), key=checkpoint_step)
        for old in complete[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)


def _barrier() -> None:
    """All ranks at once; a no-op in a single process without a group (DCP allows that too)."""
    if dist.is_initialized():
        dist.barrier()


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".tmp")
    with open(staging, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)
