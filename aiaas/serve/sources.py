"""Where models come from: folders in Triton's layout, from a directory or elsewhere.

A source only names model folders; everything about reading a folder (config
text, version folders, what changed since last time) is here too, so the
repository can treat a local directory and a registry cache alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

CONFIG_FILENAME = "config.pbtxt"


class ModelSource(Protocol):
    """Anything that can list model folders by name."""

    def list_models(self) -> dict[str, Path]: ...

    def problems(self) -> dict[str, str]:
        """Why a model it names is not served as named (e.g. an artifact refused), by name."""
        ...

    def parameters(self, name: str, version: int) -> dict[str, Any]:
        """Where a version folder came from, for the `parameters` of its model metadata."""
        ...

    def lineage(self, name: str, version: int) -> dict[str, Any] | None:
        """A version's lineage record as the source knows it (a registry: its run, data,
        recipe and parents), over the file's own; None when it knows nothing more."""
        ...


@dataclass(frozen=True)
class DirectorySource:
    """A Triton model repository: every sub-folder is a model."""

    root: Path

    def list_models(self) -> dict[str, Path]:
        if not self.root.is_dir():
            return {}
        return {
            child.name: child
            for child in sorted(self.root.iterdir())
            if child.is_dir() and not child.name.startswith(".")
        }

    def problems(self) -> dict[str, str]:
        return {}

    def parameters(self, name: str, version: int) -> dict[str, Any]:
        return {}

    def lineage(self, name: str, version: int) -> dict[str, Any] | None:
        return None


@dataclass(frozen=True)
class ModelFolder:
    """A snapshot of one model folder as read from disk."""

    name: str
    path: Path
    config_text: str | None
    versions: dict[int, Path]
    ignored: tuple[str, ...]

    def fingerprint(self, versions: list[int]) -> str:
        """Changes whenever the config or any file of the chosen versions changes."""
        digest = hashlib.sha256((self.config_text or "").encode())
        for version in sorted(versions):
            for file in sorted(self.versions[version].rglob("*")):
                if file.is_file():
                    stat = file.stat()
                    digest.update(f"{version}/{file.relative_to(self.path)}".encode())
                    digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        for label in sorted(self.path.glob("*.txt")):
            digest.update(label.name.encode() + label.read_bytes())
        return digest.hexdigest()


def read_model_folder(name: str, path: Path) -> ModelFolder:
    """Read the config text and the version folders (positive integers) of a model."""
    config_path = path / CONFIG_FILENAME
    config_text = config_path.read_text() if config_path.is_file() else None
    versions: dict[int, Path] = {}
    ignored: list[str] = []
    for child in sorted(path.iterdir()) if path.is_dir() else []:
        if not child.is_dir():
            continue
        if child.name.isascii() and child.name.isdigit() and int(child.name) > 0:
            versions[int(child.name)] = child
        else:
            ignored.append(child.name)
    return ModelFolder(name, path, config_text, versions, tuple(ignored))
