"""The number of workers, the strategy and gradient accumulation do not change the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.distributed.checkpoint import FileSystemReader
from train_support import TrainRuns, max_difference

LOSS_CURVE = Path(__file__).with_name("digits_loss_curve.json")


def losses(run_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if line["event"] == "train"]


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("ddp-2", ["--nproc", "2"]),
        ("fsdp-2", ["--nproc", "2", "--strategy", "fsdp"]),
        ("accumulate-2", ["--nproc", "1", "--grad-accumulation", "2"]),
    ],
)
def test_workers_strategy_and_accumulation_reach_the_one_worker_parameters(
    train_runs: TrainRuns, name: str, flags: list[str]
):
    assert max_difference(train_runs.baseline(), train_runs.get(name, *flags)) < 1e-5


def test_two_workers_log_the_same_global_loss_as_one(train_runs: TrainRuns):
    one, two = losses(train_runs.baseline()), losses(train_runs.get("ddp-2", "--nproc", "2"))
    assert one == pytest.approx(two, abs=1e-5)


def test_loss_curve_matches_the_checked_in_one(train_runs: TrainRuns):
    """A change to sampling, loss scaling or the schedule shows up here first."""
    expected = json.loads(LOSS_CURVE.read_text())
    curve = losses(train_runs.baseline())
    assert curve == pytest.approx(expected, abs=1e-4)
    assert curve[-1] < curve[0]


@pytest.mark.parametrize(
    ("name", "strategy", "chunks"), [("ddp-2", "ddp", 1), ("fsdp-2", "fsdp", 2)]
)
def test_fsdp_checkpoints_parameters_and_optimizer_state_in_shards(
    train_runs: TrainRuns, name: str, strategy: str, chunks: int
):
    run_dir = train_runs.get(
        name, "--nproc", "2", *(["--strategy", "fsdp"] if strategy == "fsdp" else [])
    )
    checkpoints = run_dir / "checkpoints"
    latest = checkpoints / (checkpoints / "latest").read_text().strip()
    metadata = FileSystemReader(str(latest)).read_metadata().state_dict_metadata
    for key in ("train.model.0.weight", "train.optimizer.state.0.weight.momentum_buffer"):
        assert len(metadata[key].chunks) == chunks
