"""What `aiaas train` says when it is stopped with Ctrl-C: where it was and how to go on.

The elastic agent passes the signal to the workers, which leave quietly; the facts
come from the files rank 0 keeps (`metrics.jsonl`, the checkpoint marker), so the
message is the same however far the workers got before they stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiaas.train.checkpoint import checkpoint_step, latest_checkpoint
from aiaas.train.rundir import RunDir

#: torch's agent announces a shutdown by signal with these; the user pressed Ctrl-C, they know.
_SHUTDOWN_NOTICES = ("Received %s death signal", "Sending process %s closing signal")
_AGENT_LOGGERS = (
    "torch.distributed.elastic.agent.server.api",
    "torch.distributed.elastic.multiprocessing.api",
)


class Interrupted(Exception):
    """The job was stopped by a signal (Ctrl-C); the message says where and what next."""


def stopped_message(run: RunDir) -> str:
    """One line: the step it got to, of how many, and the checkpoint `--resume` starts from."""
    step, total = _progress(run.metrics)
    where = "before the first step" if step is None else f"at step {step} of {total}"
    checkpoint = latest_checkpoint(run.checkpoints)
    if checkpoint is None:
        return f"interrupted {where}, before the first checkpoint; run it again to start over"
    return (
        f"interrupted {where}; add --resume to continue from the checkpoint of step "
        f"{checkpoint_step(checkpoint)} ({checkpoint})"
    )


def _progress(metrics: Path) -> tuple[int | None, int | None]:
    step: int | None = None
    total: int | None = None
    if not metrics.is_file():
        return step, total
    for line in metrics.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by the interruption itself
            continue
        if record.get("event") == "start":
            total = record["total_steps"]
            step = record["start_step"] if step is None else step
        elif record.get("event") == "train":
            step = record["step"]
    return step, total


class _DropShutdownNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_SHUTDOWN_NOTICES)


@contextmanager
def quiet_shutdown() -> Iterator[None]:
    """Keep torch's agent from reporting a Ctrl-C shutdown as warnings on the terminal."""
    quiet = _DropShutdownNotices()
    loggers = [logging.getLogger(name) for name in _AGENT_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
