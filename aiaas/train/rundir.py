"""The run directory: the one place a training run leaves everything it made.

    runs/<name>/
      spec.toml            the SPEC as given (if a file was given)
      config.json          the resolved configuration every worker ran with
      run.json             run id, dataset fingerprint, start time: lineage
      train.log            human-readable log of rank 0
      metrics.jsonl        one JSON object per logged step, checkpoint and evaluation
      restarts.jsonl       one line per elastic restart (which attempt, resumed from which step)
      logs/                torchrun's per-worker stdout/stderr, per attempt
      checkpoints/         DCP checkpoints and the `latest` marker
      final/model.pt       full (unsharded) state dict; final/metrics.json
      model_repository/    the exported ONNX model, servable by `aiaas serve`

On several nodes the run directory must be on a filesystem all of them share,
as with any DCP checkpoint directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any


class RunDir:
    """Paths and small writers; only rank 0 writes, so nothing here locks."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def restarts(self) -> Path:
        return self.root / "restarts.jsonl"

    @property
    def model_repository(self) -> Path:
        return self.root / "model_repository"

    def has_checkpoint(self) -> bool:
        return (self.checkpoints / "latest").is_file()

    def start(self, *, spec: Path | None, config: dict[str, Any], name: str) -> dict[str, Any]:
        """Record the SPEC and resolved config; create run.json once and return it."""
        self.root.mkdir(parents=True, exist_ok=True)
        if spec is not None and spec.resolve() != (self.root / "spec.toml").resolve():
            shutil.copyfile(spec, self.root / "spec.toml")
        write_json(self.root / "config.json", config)
        info_path = self.root / "run.json"
        if info_path.is_file():
            info: dict[str, Any] = json.loads(info_path.read_text())
            return info
        info = {
            "run_id": f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            "name": name,
            "created": time.time(),
            "run_dir": str(self.root.absolute()),  # never relative to where it was started
        }
        write_json(info_path, info)
        return info

    def info(self) -> dict[str, Any]:
        """run.json as `start` and `update_info` left it."""
        info: dict[str, Any] = json.loads((self.root / "run.json").read_text())
        return info

    def update_info(self, **fields: Any) -> None:
        info_path = self.root / "run.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        info.update(fields)
        write_json(info_path, info)

    def record_restart(self, restart_count: int, resumed_from_step: int | None) -> None:
        append_json_line(
            self.restarts,
            {
                "time": time.time(),
                "restart_count": restart_count,
                "resumed_from_step": resumed_from_step,
            },
        )


def write_json(path: Path, value: Any) -> None:
    """Write-then-rename, so a reader never sees half a file."""
    staging = path.with_name(path.name + f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(staging, path)


def append_json_line(path: Path, value: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(value, default=str) + "\n")
