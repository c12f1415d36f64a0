"""What rank 0 tells people and files about a run; other ranks stay silent.

A live rich progress bar when stdout is a terminal, plain lines otherwise (CI
logs, pipes), and always the same facts in `metrics.jsonl` and `train.log`.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from aiaas.train.rundir import RunDir, append_json_line


class Reporter:
    """Progress display plus the metrics and log files of one attempt of a run."""

    def __init__(
        self, run: RunDir | None, *, total_steps: int, start_step: int, attempt: int
    ) -> None:
        self.run = run
        self.attempt = attempt
        self.total_steps = total_steps
        self.console = Console()
        self._progress: Progress | None = None
        self._task: Any = None
        if run is not None and self.console.is_terminal:
            self._progress = Progress(
                TextColumn("step"),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("loss {task.fields[loss]}  {task.fields[rate]} samples/s  ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._progress.add_task(
                "train", total=total_steps, completed=start_step, loss="-", rate="-"
            )

    def __enter__(self) -> Reporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step(
        self, step: int, loss: float, steps: int, samples: int, seconds: float, lr: float
    ) -> None:
        """A logging interval of `steps` steps (`samples` samples, `seconds`) ended at `step`."""
        if self.run is None:
            return
        rate = samples / seconds if seconds > 0 else 0.0
        eta = (self.total_steps - step) * seconds / steps
        self._emit(
            {"event": "train", "step": step, "loss": loss, "lr": lr}
            | {"samples_per_s": rate, "step_s": seconds / steps, "attempt": self.attempt}
        )
        line = f"step {step}/{self.total_steps}  loss {loss:.4f}  {rate:,.0f} samples/s"
        if self._progress is None:
            self.say(f"{line}  ETA {_clock(eta)}")
            return
        self._progress.update(self._task, completed=step, loss=f"{loss:.4f}", rate=f"{rate:,.0f}")
        self.log_only(line)

    def event(self, name: str, **fields: Any) -> None:
        if self.run is None:
            return
        self._emit({"event": name, **fields, "attempt": self.attempt})

    def say(self, message: str) -> None:
        """A line for people (console and train.log); a no-op off rank 0."""
        if self.run is None:
            return
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, flush=True)
        self.log_only(message)

    def log_only(self, message: str) -> None:
        if self.run is None:
            return
        with open(self.run.log, "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def _emit(self, record: dict[str, Any]) -> None:
        assert self.run is not None
        append_json_line(self.run.metrics, {"time": time.time(), **record})


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
