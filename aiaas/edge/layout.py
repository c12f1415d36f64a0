"""The agent's folder on the device, and the one way a version goes live.

    DIR/staging-<v>/<v>/...      a download in progress (kept across restarts: resumed)
    DIR/versions/<v>/<v>/...     checked versions, each a one-version Triton model folder
    DIR/versions/<v>/registry.json   which registry version it is (name, sha256)
    DIR/versions/<v>/config.pbtxt    the bundle's task, for the server (when it has one)
    DIR/current -> versions/<v>  what is served

A version goes live in two renames: the checked staging folder becomes
`versions/<v>` (one rename), then a new symlink replaces `current` (`os.replace`,
atomic). A crash at any point leaves `current` pointing at a complete, checked
folder; nothing half-written is ever behind it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

CURRENT = "current"
VERSIONS = "versions"
RECORD = "registry.json"
#: A bundle's task -> config.pbtxt's `task`, which tells the server how to serve it
#: (a registry version carries no config.pbtxt of its own).
SERVER_TASKS = {"text-generation": "text-generation", "embedding": "feature-extraction"}


class AgentDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.current = root / CURRENT

    def prepare(self) -> None:
        """Make the folders; remove what an interrupted swap may have left."""
        (self.root / VERSIONS).mkdir(parents=True, exist_ok=True)
        (self.root / f".{CURRENT}.tmp").unlink(missing_ok=True)

    def staging(self, version: int) -> Path:
        """Where a version's files download to: the version folder inside its model folder."""
        return self.root / f"staging-{version}" / str(version)

    def drop_staging(self, keep: int | None = None) -> None:
        """Remove staged downloads, but the one of version `keep` (it may be resumed)."""
        for folder in self.root.glob("staging-*"):
            if folder.name != f"staging-{keep}":
                shutil.rmtree(folder, ignore_errors=True)

    def write_task(self, version: int, task: object) -> None:
        """The staged version's config.pbtxt naming its task: an embedding bundle is then
        served on /v1/embeddings, a language model on /v1/completions."""
        server_task = SERVER_TASKS.get(str(task))
        if server_task is None:
            return
        text = f'parameters {{ key: "task" value {{ string_value: "{server_task}" }} }}\n'
        (self.staging(version).parent / "config.pbtxt").write_text(text)

    def installed(self) -> dict[str, Any] | None:
        """The record of the version `current` points at; None before the first swap."""
        if not self.current.is_symlink():
            return None
        try:
            data: dict[str, Any] = json.loads((self.current / RECORD).read_text())
        except (OSError, ValueError):
            return None
        return data

    def kept(self, version: int, sha256: str) -> Path | None:
        """An installed folder of this exact version (the one before, after a rollback)."""
        folder = self.root / VERSIONS / str(version)
        try:
            record = json.loads((folder / RECORD).read_text())
        except (OSError, ValueError):
            return None
        return folder if record.get("sha256") == sha256 else None

    def install(self, version: int, record: dict[str, Any]) -> Path:
        """Move a checked staging folder into `versions/` and point `current` at it."""
        staged = self.staging(version).parent
        (staged / RECORD).write_text(json.dumps(record))
        final = self.root / VERSIONS / str(version)
        if final.exists():
            if self.current.resolve() == final.resolve():
                raise OSError(f"{final} is being served; refusing to replace it")
            shutil.rmtree(final)
        staged.rename(final)
        self.point_at(final)
        return final

    def point_at(self, folder: Path) -> None:
        link = self.root / f".{CURRENT}.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(Path(VERSIONS) / folder.name)
        os.replace(link, self.current)

    def prune(self, keep: set[Path]) -> None:
        """Remove installed versions other than those in `keep` (current and the one
        before it, to fall back to)."""
        kept = {path.resolve() for path in keep}
        for folder in (self.root / VERSIONS).iterdir():
            if folder.resolve() not in kept:
                shutil.rmtree(folder, ignore_errors=True)
