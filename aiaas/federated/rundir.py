"""The federated run directory: per-round metrics, checkpoints, plot, final model.

    runs/<name>-federated/
      spec.toml  config.json  run.json    SPEC, resolved settings, run id (as `aiaas train`)
      rounds.jsonl                        one JSON object per round (metrics, failures, timing)
      rounds.png                          accuracy and loss per round (every 10 rounds, at the end)
      checkpoints/round-NNNN.pt  latest   global model + strategy state after each round
      final/model.pt  final/metrics.json  the final global weights and metrics
      model_repository/                   the exported ONNX model

Every file is written whole and renamed into place, so a server killed between
two rounds leaves a directory `--resume` can continue from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from aiaas.train.rundir import RunDir, append_json_line, write_json

KEEP_CHECKPOINTS = 2


class FederatedRunDir(RunDir):
    @property
    def rounds(self) -> Path:
        return self.root / "rounds.jsonl"

    @property
    def plot(self) -> Path:
        return self.root / "rounds.png"

    def record_round(self, line: dict[str, Any]) -> None:
        append_json_line(self.rounds, line)

    def read_rounds(self) -> list[dict[str, Any]]:
        if not self.rounds.is_file():
            return []
        return [json.loads(line) for line in self.rounds.read_text().splitlines() if line]

    def truncate_rounds(self, last_round: int) -> None:
        """On resume, forget rounds after the checkpoint (a round the stop cut short)."""
        kept = [line for line in self.read_rounds() if line.get("round", 0) <= last_round]
        staging = self.rounds.with_name("rounds.jsonl.tmp")
        staging.write_text("".join(json.dumps(line) + "\n" for line in kept))
        os.replace(staging, self.rounds)

    def save_checkpoint(self, server_round: int, payload: dict[str, Any]) -> Path:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        path = self.checkpoints / f"round-{server_round:04d}.pt"
        staging = path.with_name(path.name + ".tmp")
        torch.save({"round": server_round, **payload}, staging)
        os.replace(staging, path)
        write_json(self.checkpoints / "latest", {"round": server_round, "path": path.name})
        for old in sorted(self.checkpoints.glob("round-*.pt"))[:-KEEP_CHECKPOINTS]:
            old.unlink()
        return path

    def latest_round(self) -> int | None:
        """The round of the checkpoint `--resume` would continue from, if any."""
        marker = self.checkpoints / "latest"
        if not marker.is_file():
            return None
        return int(json.loads(marker.read_text())["round"])

    def load_latest_checkpoint(self) -> dict[str, Any] | None:
        marker = self.checkpoints / "latest"
        if not marker.is_file():
            return None
        name = json.loads(marker.read_text())["path"]
        loaded: dict[str, Any] = torch.load(self.checkpoints / name, weights_only=False)
        return loaded

    def write_final(self, state: dict[str, torch.Tensor], metrics: dict[str, Any]) -> None:
        self.final.mkdir(parents=True, exist_ok=True)
        staging = self.final / "model.pt.tmp"
        torch.save(state, staging)
        os.replace(staging, self.final / "model.pt")
        write_json(self.final / "metrics.json", metrics)
