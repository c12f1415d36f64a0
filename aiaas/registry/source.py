"""Serving by alias: a model source (the server's `ModelSource` protocol) that
resolves `models:/NAME@ALIAS` (or `/VERSION`) URIs and hands the server folders in
Triton's layout, `<cache>/<NAME>/<registry version>/model.onnx`.

Each `list_models` call resolves the URIs again, so an alias moved in the
registry shows up as a new version folder; the folders of other versions are
removed, leaving the server's default policy (latest 1) only one to serve. A
version is downloaded next to the cache, verified, and renamed into place, so
the server never sees a half-written folder. When the registry cannot be
reached, the last folder that was resolved keeps being served, and `problems`
says why. One cache folder serves one server process.

A server calls `refresh` off its event loop and passes `min_refresh_s=math.inf`,
so that the `list_models` calls it makes on the loop answer from memory.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiaas import lineage
from aiaas.errors import AiaasError, InvalidArgument, NotFound
from aiaas.registry.api import Registry
from aiaas.registry.artifacts import file_sha256
from aiaas.registry.files import safe_relative
from aiaas.registry.records import ModelVersion
from aiaas.registry.uri import ModelUri, parse_version_uri

log = logging.getLogger(__name__)

STAGING = ".staging"


class RegistrySource:
    def __init__(
        self,
        registry: Registry,
        uris: Iterable[str],
        cache_dir: str | Path,
        *,
        min_refresh_s: float = 0.0,
    ) -> None:
        """`min_refresh_s` > 0 answers repeated calls within that time from memory."""
        self.registry = registry
        self.cache_dir = Path(cache_dir)
        self.min_refresh_s = min_refresh_s
        self._uris: dict[str, ModelUri] = {}
        for text in uris:
            uri = parse_version_uri(text)
            if uri.name in self._uris:
                raise InvalidArgument(f"model {uri.name!r} is named by two URIs; serve one")
            self._uris[uri.name] = uri
        self._current: dict[str, ModelVersion] = {}
        #: Every version resolved so far, for the metadata of the one being loaded.
        self._resolved: dict[tuple[str, int], ModelVersion] = {}
        #: Their lineage records, built off the server's event loop (parents are queries).
        self._lineage: dict[tuple[str, int], dict[str, Any]] = {}
        self._problems: dict[str, str] = {}
        self._verified: set[tuple[str, int, str]] = set()
        self._lock = threading.Lock()
        self._refreshed_at: float | None = None
        # Leftovers of downloads cut short by a crash; the cache belongs to one server process.
        shutil.rmtree(self.cache_dir / STAGING, ignore_errors=True)

    @property
    def names(self) -> list[str]:
        """The model names the URIs serve under, resolved or not."""
        return list(self._uris)

    def list_models(self) -> dict[str, Path]:
        if not self._fresh():
            with self._lock:
                if not self._fresh():
                    self._refresh_all()
        current = dict(self._current)
        return {name: self.cache_dir / name for name in self._uris if name in current}

    def refresh(self) -> None:
        """Resolve every URI again now (blocking: database queries and downloads)."""
        with self._lock:
            self._refresh_all()

    def problems(self) -> dict[str, str]:
        """Why a model is not served at the version its URI names now, by model name."""
        return dict(self._problems)

    def parameters(self, name: str, version: int) -> dict[str, Any]:
        """What a served folder version is in the registry, for its V2 model metadata."""
        record = self._resolved.get((name, version))
        if record is None:
            return {}
        return {
            "model_uri": str(self._uris[name]),
            "registry_version": record.version,
            "sha256": record.sha256,
        }

    def lineage(self, name: str, version: int) -> dict[str, Any] | None:
        """A served version's lineage as the registry records it: its run, the dataset
        fingerprint of its params, its recipe's digest, its parents with their sha256
        (over the record the writer stored in ``params["lineage"]``, if any)."""
        return self._lineage.get((name, version))

    def metadata(self, name: str) -> dict[str, int | str]:
        """Which registry version a served model is, for the server's model metadata."""
        with self._lock:
            version = self._current.get(name)
        if version is None:
            raise NotFound(f"model {name!r} is not served from the registry")
        return {"registry_version": version.version, "sha256": version.sha256}

    def _fresh(self) -> bool:
        refreshed_at = self._refreshed_at
        return refreshed_at is not None and time.monotonic() - refreshed_at < self.min_refresh_s

    def _refresh_all(self) -> None:
        for name, uri in self._uris.items():
            self._refresh(name, uri)
        self._refreshed_at = time.monotonic()

    def _refresh(self, name: str, uri: ModelUri) -> None:
        try:
            version = self.registry.resolve(uri)
            # Known before its folder appears, so a server loading it then finds its metadata.
            self._resolved[(version.name, version.version)] = version
            key = (version.name, version.version)
            if key not in self._lineage:
                self._lineage[key] = self._lineage_record(version)
            self._materialize(version)
        except (AiaasError, OSError) as error:
            kept = self._current.get(name)
            still = f"; still serving {kept.uri}" if kept else ""
            log.warning("cannot resolve %s: %s%s", uri, error, still)
            self._problems[name] = f"cannot serve {uri}: {error}{still}"
            return
        self._current[name] = version
        self._problems.pop(name, None)
        self._remove_other_versions(name, version.version)

    def _lineage_record(self, version: ModelVersion) -> dict[str, Any]:
        params = version.params or {}
        stored = params.get("lineage")
        record = dict(stored) if isinstance(stored, dict) else {}
        parents = [{"uri": ref.uri, "sha256": self._sha256_of(ref.uri)} for ref in version.parents]
        known = {parent["uri"] for parent in parents}
        kept = [p for p in record.get("parents") or [] if isinstance(p, dict)]
        record["parents"] = parents + [p for p in kept if p.get("uri") not in known]
        facts = {
            "run_id": version.run_id,
            "dataset_fingerprint": params.get("dataset_fingerprint"),
            "recipe_digest": lineage.recipe_digest(version.recipe),
        }
        record.update({key: value for key, value in facts.items() if value is not None})
        return record

    def _sha256_of(self, uri: str) -> str | None:
        """A parent's sha256; None once the parent version is deleted."""
        try:
            return self.registry.resolve(uri).sha256
        except NotFound:
            return None

    def _materialize(self, version: ModelVersion) -> None:
        folder = self.cache_dir / version.name / str(version.version)
        key = (version.name, version.version, version.sha256)
        if key in self._verified and folder.is_dir():  # gone once another version was served
            return
        if folder.is_dir() and not _matches(folder, version):
            log.warning("cached %s does not match the registry; downloading it again", folder)
            shutil.rmtree(folder)
        if not folder.is_dir():
            self._download(version, folder)
        self._verified.add(key)

    def _download(self, version: ModelVersion, folder: Path) -> None:
        staging = self.cache_dir / STAGING / f"{version.name}-{version.version}-{uuid.uuid4().hex}"
        try:
            self.registry.download_version(version, staging)
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                staging.rename(folder)
            except OSError:
                if not folder.is_dir():  # another process sharing the cache got there first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _remove_other_versions(self, name: str, keep: int) -> None:
        model_folder = self.cache_dir / name
        for child in model_folder.iterdir():
            if child.is_dir() and child.name != str(keep):
                shutil.rmtree(child, ignore_errors=True)


def _matches(folder: Path, version: ModelVersion) -> bool:
    """Every file of the version present with its hash, and nothing else."""
    expected = {item.path: item.sha256 for item in version.files}
    present = {
        path.relative_to(folder).as_posix(): path for path in folder.rglob("*") if path.is_file()
    }
    if set(present) != set(expected):
        return False
    return all(
        file_sha256(folder.joinpath(*safe_relative(path).parts)) == sha
        for path, sha in expected.items()
    )
