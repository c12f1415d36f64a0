"""Interrupted and resumed (by hand, by a lost worker, on fewer workers) == uninterrupted."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from train_support import TrainRuns, max_difference, run_train

from aiaas.train.loop import FAULT_ENV

FSDP_2 = ("--nproc", "2", "--strategy", "fsdp")


def train_steps(run_dir: Path) -> list[tuple[int, int]]:
    """(attempt, step) of every logged training step, in order."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(line["attempt"], line["step"]) for line in lines if line["event"] == "train"]


@pytest.fixture(scope="module")
def interrupted(train_runs: TrainRuns) -> SimpleNamespace:
    """2-worker FSDP stopped at step 6; resumed on 2 workers, and (a copy) on 1 worker."""
    stopped = train_runs.get("stopped-fsdp-2", *FSDP_2, "--stop-at-step", "6")
    at_stop = SimpleNamespace(
        checkpoints=sorted(path.name for path in (stopped / "checkpoints").glob("step-*")),
        final_exists=(stopped / "final").exists(),
        steps=train_steps(stopped),
    )
    resharded = stopped.with_name("resharded-to-1")
    shutil.copytree(stopped, resharded)
    train_runs.launch(stopped, *FSDP_2, "--resume")
    train_runs.launch(resharded, "--nproc", "1", "--strategy", "fsdp", "--resume")
    return SimpleNamespace(resumed=stopped, resharded=resharded, at_stop=at_stop)


def test_stopping_early_leaves_a_checkpoint_and_no_final_model(interrupted: SimpleNamespace):
    assert interrupted.at_stop.checkpoints == ["step-00000006"]
    assert not interrupted.at_stop.final_exists
    assert interrupted.at_stop.steps[-1] == (0, 6)


def test_resumed_run_equals_the_uninterrupted_one(
    train_runs: TrainRuns, interrupted: SimpleNamespace
):
    assert max_difference(train_runs.baseline(), interrupted.resumed) < 1e-5
    steps = [step for _, step in train_steps(interrupted.resumed)]
    assert steps == list(range(1, 13))  # continued at step 7, nothing repeated or skipped


def test_checkpoint_from_two_workers_resumes_on_one(
    train_runs: TrainRuns, interrupted: SimpleNamespace
):
    assert max_difference(train_runs.baseline(), interrupted.resharded) < 1e-5


def test_resume_keeps_the_run_id_and_the_last_checkpoints(interrupted: SimpleNamespace):
    resumed = interrupted.resumed
    assert json.loads((resumed / "run.json").read_text())["run_id"].startswith("digits-")
    assert (resumed / "checkpoints" / "latest").read_text().strip() == "step-00000012"
    assert sorted(p.name for p in (resumed / "checkpoints").glob("step-*")) == [
        "step-00000006",
        "step-00000012",
    ]


def test_lost_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(train_runs: TrainRuns):
    run_dir = train_runs.get(
        "elastic", "--nproc", "2", "--max-restarts", "1", env={FAULT_ENV: "1:8"}
    )
    restarts = [json.loads(line) for line in (run_dir / "restarts.jsonl").read_text().splitlines()]
    assert [(r["restart_count"], r["resumed_from_step"]) for r in restarts] == [(1, 6)]
    assert max_difference(train_runs.baseline(), run_dir) < 1e-5
    # Attempt 0 got to step 8 (killed before it), attempt 1 redid 7 and 8 from step 6.
    assert train_steps(run_dir)[-6:] == [(1, step) for step in range(7, 13)]


def test_lost_worker_without_restarts_fails_the_job_with_one_line(train_runs: TrainRuns):
    run_dir = train_runs.workdir / "runs" / "no-restarts"
    result = run_train(
        str(train_runs.spec), "--run-dir", str(run_dir), "--nproc", "2",
        cwd=train_runs.workdir, env={FAULT_ENV: "1:2"},
    )  # fmt: skip
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    # Rank 0 may fail in the same poll of the agent (its peer vanished mid-collective).
    assert re.match(r"error: worker rank [01] failed \(.*\); logs in .*no-restarts/logs$", last)
    assert not (run_dir / "final").exists()
