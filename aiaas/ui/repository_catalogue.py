"""The catalogue of a model repository (Triton's folder layout): each model folder's
version folders with their files, and, for what is loaded, the signature and the
config's parameters (e.g. `task=text-generation`) as tags. No metrics, no lineage:
a folder keeps neither."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from aiaas.errors import AiaasError, NotFound
from aiaas.serve.repository import ModelRepository, ModelVersion
from aiaas.serve.sources import read_model_folder
from aiaas.ui.catalogue import FileInfo, Lineage, ModelInfo, VersionInfo

_CHUNK = 1 << 20


class FileHashes:
    """sha256 of files, remembered by (path, size, mtime): a page view hashes a large
    model file once, not on every refresh."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
        with self._lock:
            self._known[key] = digest.hexdigest()
        return self._known[key]


class RepositoryCatalogue:
    """Blocking (walks folders, hashes files): the routes call it off the event loop."""

    source = "repository"

    def __init__(
        self,
        repository: ModelRepository,
        loaded: list[ModelVersion],
        exclude: frozenset[str] = frozenset(),
        hashes: FileHashes | None = None,
    ) -> None:
        """`loaded`: the repository's loaded versions, taken on the event loop that changes
        them; `exclude`: names another catalogue (the registry's) describes better."""
        self.repository = repository
        self.loaded = loaded
        self.exclude = exclude
        self.hashes = hashes or FileHashes()

    def models(self) -> list[ModelInfo]:
        """Every model, without file hashes (the list needs none)."""
        folders, loaded = self._inventory()
        names = sorted((set(folders) | set(loaded)) - self.exclude)
        return [self._model(n, folders.get(n), loaded.get(n, []), False) for n in names]

    def model(self, name: str) -> ModelInfo:
        folders, loaded = self._inventory()
        if name in self.exclude or (name not in folders and name not in loaded):
            raise NotFound(f"no model named {name!r} in the catalogue")
        return self._model(name, folders.get(name), loaded.get(name, []), True)

    def _inventory(self) -> tuple[dict[str, Path], dict[str, list[ModelVersion]]]:
        loaded: dict[str, list[ModelVersion]] = {}
        for version in self.loaded:
            loaded.setdefault(version.name, []).append(version)
        folders: dict[str, Path] = {}
        for source in self.repository.sources:
            for name, path in source.list_models().items():
                folders.setdefault(name, path)
        return folders, loaded

    def lineage(self, name: str, version: int) -> Lineage | None:
        return None

    def devices(self, name: str, version: int) -> list[dict[str, Any]] | None:
        return None

    def _model(
        self, name: str, folder: Path | None, loaded: list[ModelVersion], with_files: bool
    ) -> ModelInfo:
        by_number = {version.version: version for version in loaded}
        paths: dict[int, Path] = {}
        if folder is not None:
            try:
                paths = read_model_folder(name, folder).versions
            except (OSError, AiaasError):
                paths = {}
        tags: dict[str, str] = {}
        for version in loaded:
            tags.update(version.serving.parameters)
        versions = tuple(
            self._version(
                name, number, paths.get(number) if with_files else None, by_number.get(number)
            )
            for number in sorted(set(paths) | set(by_number))
        )
        return ModelInfo(name, self.source, versions, tags=tags)

    def _version(
        self, name: str, number: int, path: Path | None, loaded: ModelVersion | None
    ) -> VersionInfo:
        files = self._files(path) if path is not None else ()
        return VersionInfo(
            name=name,
            version=number,
            size_bytes=sum(item.size_bytes for item in files) if files else None,
            files=files,
            inputs=loaded.serving.inputs if loaded else (),
            outputs=loaded.serving.outputs if loaded else (),
        )

    def _files(self, folder: Path) -> tuple[FileInfo, ...]:
        found = []
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                relative = path.relative_to(folder).as_posix()
                found.append(FileInfo(relative, path.stat().st_size, self.hashes.sha256(path)))
        return tuple(found)
