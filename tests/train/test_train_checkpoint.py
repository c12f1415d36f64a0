"""Checkpoints are atomic: `latest` names only a complete one, and leftovers are cleaned."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiaas.train.checkpoint import CheckpointManager, TrainingState, latest_checkpoint
from aiaas.train.parallel import ProcessGrid

# DCP says so whenever it runs without a process group, which is what these tests want.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


@pytest.fixture
def grid() -> ProcessGrid:
    """One process and no process group: DCP and the manager then skip their collectives."""
    return ProcessGrid(
        rank=0, local_rank=0, world_size=1, local_world_size=1, restart_count=0,
        device=torch.device("cpu"),
    )  # fmt: skip


def make_state(seed: int, steps: int = 1) -> TrainingState:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    for _ in range(steps):
        model(torch.randn(3, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    return TrainingState(model=model, optimizer=optimizer, scheduler=scheduler)


def test_save_then_load_restores_model_optimizer_schedule_step_and_rng(
    tmp_path: Path, grid: ProcessGrid
):
    manager = CheckpointManager(tmp_path / "ckpt", grid, keep_last=2)
    saved = make_state(seed=1, steps=3)
    saved.step = 5
    manager.save(saved)
    rng_after_save = torch.rand(3)

    restored = make_state(seed=2)
    assert manager.load_latest(restored) == 5
    assert torch.equal(restored.model.weight, saved.model.weight)
    moments = restored.optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, saved.optimizer.state_dict()["state"][0]["exp_avg"])
    assert restored.scheduler.last_epoch == saved.scheduler.last_epoch == 3
    assert restored.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 4)
    assert torch.equal(torch.rand(3), rng_after_save)


def test_latest_names_only_complete_checkpoints_and_old_ones_are_pruned(
    tmp_path: Path, grid: ProcessGrid
):
    root = tmp_path / "ckpt"
    manager = CheckpointManager(root, grid, keep_last=2)
    state = make_state(seed=1)
    for step in (2, 4, 6):
        state.step = step
        manager.save(state)
    assert sorted(p.name for p in root.glob("step-*")) == ["step-00000004", "step-00000006"]
    # A save killed half way: its staging directory exists, `latest` still names step 6.
    (root / ".tmp-step-00000008").mkdir()
    (root / ".tmp-step-00000008" / "__0_0.distcp").write_bytes(b"partial")
    assert latest_checkpoint(root) == root / "step-00000006"
    CheckpointManager(root, grid, keep_last=2)  # the next run's manager clears it
    assert not (root / ".tmp-step-00000008").exists()


def test_a_marker_naming_an_incomplete_directory_is_ignored(tmp_path: Path):
    (tmp_path / "step-00000003").mkdir()
    (tmp_path / "latest").write_text("step-00000003\n")
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
