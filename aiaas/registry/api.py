"""The registry's Python API, used by the CLI, the HTTP routes, the serving source and
the other aiaas packages: one object over a store and an artifact store.

`register` writes and verifies every blob before it asks the store for a version
number, so a version row never exists without its files, and a process killed
before the commit leaves at most unreferenced blobs that `gc` removes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy.exc import OperationalError

from aiaas import lineage
from aiaas.errors import AiaasError, InvalidArgument, Unavailable
from aiaas.registry import files as artifact_files
from aiaas.registry import migrate
from aiaas.registry.artifacts import ArtifactStore
from aiaas.registry.db import Database, home_dir, resolve_uri, sqlite_path
from aiaas.registry.faults import pause_point
from aiaas.registry.gc import DEFAULT_GRACE_S, GcReport, collect_garbage
from aiaas.registry.parsing import check_json_object, check_metric, check_tag
from aiaas.registry.records import (
    ArtifactFile,
    DeviceReport,
    Lineage,
    MetricFilter,
    ModelVersion,
    NewVersion,
    RegisteredModel,
)
from aiaas.registry.schema import DEVICE_ID_MAX
from aiaas.registry.signature import read_model_facts
from aiaas.registry.sql_store import SqlStore
from aiaas.registry.store import AbstractStore
from aiaas.registry.uri import (
    ModelUri,
    check_alias,
    check_name,
    check_version,
    parse_uri,
    parse_version_uri,
)

_DEVICE_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{DEVICE_ID_MAX}}}")
ENV_ARTIFACT_ROOT = "AIAAS_ARTIFACT_ROOT"
RUN_ID_MAX = 256


def default_artifact_root(registry_uri: str | None = None) -> str:
    """$AIAAS_ARTIFACT_ROOT, else `artifacts/` next to a SQLite file, else ~/.aiaas/artifacts."""
    if os.environ.get(ENV_ARTIFACT_ROOT):
        return os.environ[ENV_ARTIFACT_ROOT]
    path = sqlite_path(resolve_uri(registry_uri))
    return str(path.parent / "artifacts") if path else str(home_dir() / "artifacts")


class Registry:
    def __init__(self, store: AbstractStore, artifacts: ArtifactStore, uri: str) -> None:
        self.store = store
        self.artifacts = artifacts
        self.uri = uri

    @classmethod
    def open(
        cls, uri: str | None = None, artifact_root: str | None = None, *, create: bool = True
    ) -> Registry:
        """Open (migrating as needed) the registry at `uri` or the default; a SQLite file
        is made only with `create` (for commands that write) and never in a missing folder."""
        database = Database(resolve_uri(uri), create=create)
        try:
            migrate.ensure_current(database)
        except OperationalError as error:
            database.dispose()
            raise Unavailable(
                f"cannot open registry {database.display_uri}: {error.orig}"
            ) from None
        except BaseException:
            database.dispose()
            raise
        root = artifact_root or default_artifact_root(uri)
        return cls(SqlStore(database), ArtifactStore(root), database.display_uri)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- models -------------------------------------------------------------------------------
    def create_model(
        self, name: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> RegisteredModel:
        return self.store.create_model(check_name(name), description, _tags(tags))

    def get_model(self, name: str) -> RegisteredModel:
        return self.store.get_model(check_name(name))

    def list_models(self) -> list[RegisteredModel]:
        return self.store.list_models()

    def versions(self, name: str) -> list[ModelVersion]:
        return self.store.list_versions(check_name(name))

    # --- versions -----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        path: str | Path,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        parents: Iterable[str] = (),
        run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        recipe: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Store PATH (an ONNX file, or a folder with one and its sidecar files) as the
        model's next version; the model is created on its first version.

        A file carrying a lineage record (`aiaas.lineage`) fills what the caller left out:
        the run id, the parents this registry knows (same URI and sha256), and params get
        the dataset fingerprint and the whole record, so a copied file keeps its thread.
        """
        check_name(name)
        local_files = artifact_files.collect(Path(path))
        signature, props = read_model_facts(local_files[artifact_files.MODEL_FILENAME])
        record = lineage.from_metadata(props)
        parent_uris = list(parents)
        if record is not None:
            run_id = run_id if run_id is not None else _record_run_id(record)
            params = _params_with_record(params, record)
            parent_uris = parent_uris or self._known_parents(record)
        if run_id is not None and not 0 < len(run_id) <= RUN_ID_MAX:
            raise InvalidArgument(f"run id must be 1-{RUN_ID_MAX} characters")
        checked_tags = _tags(tags)
        checked_metrics = dict(check_metric(k, v) for k, v in (metrics or {}).items())
        checked_params = None if params is None else check_json_object(dict(params), "params")
        checked_recipe = None if recipe is None else check_json_object(dict(recipe), "recipe")
        parent_refs = tuple(self.resolve(uri).ref for uri in parent_uris)
        stored = self._store_files(local_files)
        pause_point("artifact-stored")
        new = NewVersion(
            files=tuple(stored),
            sha256=artifact_files.manifest_sha256(stored),
            size_bytes=sum(item.size_bytes for item in stored),
            signature=signature,
            description=description,
            tags=checked_tags,
            metrics=checked_metrics,
            parents=parent_refs,
            run_id=run_id,
            params=checked_params,
            recipe=checked_recipe,
        )
        return self.store.create_version(name, new)

    def _known_parents(self, record: Mapping[str, Any]) -> list[str]:
        """The record's parent URIs that name, in this registry, a version with the same
        content: a file registered in another registry must not link to a stranger."""
        found = []
        for parent in record.get("parents") or []:
            if not isinstance(parent, dict) or not isinstance(parent.get("uri"), str):
                continue
            try:
                version = self.resolve(parent["uri"])
            except AiaasError:  # unknown here, or not a models:/ URI
                continue
            if parent.get("sha256") in (None, version.sha256):
                found.append(version.uri)
        return found

    def _store_files(self, local_files: Mapping[str, Path]) -> list[ArtifactFile]:
        stored = []
        for relative, local in local_files.items():
            blob = self.artifacts.put(local)
            stored.append(ArtifactFile(relative, blob.sha256, blob.size_bytes))
        return stored

    def resolve(self, uri: str | ModelUri) -> ModelVersion:
        """The version a `models:/NAME/VERSION`, `@ALIAS` or `/latest` URI names right now."""
        parsed = parse_version_uri(uri) if isinstance(uri, str) else uri
        if parsed.version is not None:
            return self.store.get_version(parsed.name, parsed.version)
        if parsed.alias is not None:
            return self.store.get_version_by_alias(parsed.name, parsed.alias)
        if parsed.latest:
            return self.store.get_latest_version(parsed.name)
        raise InvalidArgument(f"{parsed} names a model, not a version")

    def download(self, uri: str | ModelUri, dest: str | Path) -> Path:
        """Copy the version's files into DEST (new or empty), every hash verified; DEST is
        complete or absent afterwards."""
        version = self.resolve(uri)
        return self.download_version(version, Path(dest))

    def download_version(self, version: ModelVersion, dest: Path) -> Path:
        def fetch_into(staging: Path) -> None:
            for item in version.files:
                target = staging.joinpath(*artifact_files.safe_relative(item.path).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                what = f"{item.path} of {version.uri}"
                self.artifacts.fetch(item.sha256, item.size_bytes, target, what)

        return artifact_files.materialize(dest, fetch_into)

    def delete(self, uri: str) -> None:
        """Delete a version (`models:/NAME/VERSION`) or a whole model (`models:/NAME`)."""
        parsed = parse_uri(uri)
        if parsed.is_model:
            self.store.delete_model(parsed.name)
        else:
            version = self.resolve(parsed)
            self.store.delete_version(version.name, version.version)

    def tag(self, uri: str, tags: Mapping[str, str], remove: Iterable[str] = ()) -> None:
        """Set (and remove) tags on a model (`models:/NAME`) or a version."""
        parsed = parse_uri(uri)
        checked, removed = _tags(tags), tuple(remove)
        for key in removed:
            check_tag(key, "")
        if parsed.is_model:
            self.store.set_model_tags(parsed.name, checked, removed)
        else:
            version = self.resolve(parsed)
            self.store.set_version_tags(version.name, version.version, checked, removed)

    def search(
        self,
        tags: Mapping[str, str] | None = None,
        metrics: Iterable[MetricFilter] = (),
        name: str | None = None,
    ) -> list[ModelVersion]:
        return self.store.search_versions(
            _tags(tags), list(metrics), None if name is None else check_name(name)
        )

    def lineage(self, uri: str | ModelUri) -> Lineage:
        version = self.resolve(uri)
        return self.store.lineage(version.name, version.version)

    # --- aliases ------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        self.store.set_alias(check_name(name), check_alias(alias), check_version(version))
        return self.store.get_version(name, version)

    def delete_alias(self, name: str, alias: str) -> None:
        self.store.delete_alias(check_name(name), check_alias(alias))

    def aliases(self, name: str) -> dict[str, int]:
        return self.get_model(name).aliases

    # --- edge devices -------------------------------------------------------------------------
    def report_device(self, report: DeviceReport) -> DeviceReport:
        """Record an edge agent's state; the model need not exist (any more)."""
        check_device_id(report.device_id)
        parsed = parse_version_uri(report.model_uri)
        if parsed.name != report.model:
            raise InvalidArgument(f"model {report.model!r} does not match {report.model_uri}")
        return self.store.put_device(report)

    def devices(self, model: str | None = None) -> list[DeviceReport]:
        return self.store.list_devices(None if model is None else check_name(model))

    # --- artifacts ----------------------------------------------------------------------------
    def gc(self, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False) -> GcReport:
        if grace_s < 0:
            raise InvalidArgument("grace period must not be negative")
        return collect_garbage(self.store, self.artifacts, grace_s=grace_s, dry_run=dry_run)


def check_device_id(device_id: str) -> str:
    """1-128 of letters, digits, '.', '_', '-': safe in a URL path and a table cell."""
    if not _DEVICE_ID.fullmatch(device_id):
        raise InvalidArgument(
            f"device id {device_id!r}: use 1-{DEVICE_ID_MAX} letters, digits, '.', '_' or '-'"
        )
    return device_id


def _record_run_id(record: Mapping[str, Any]) -> str | None:
    run_id = record.get("run_id")
    return run_id if isinstance(run_id, str) and 0 < len(run_id) <= RUN_ID_MAX else None


def _params_with_record(
    params: Mapping[str, Any] | None, record: Mapping[str, Any]
) -> dict[str, Any]:
    """The caller's params (their values win), plus the data fingerprint and the record."""
    filled = dict(params or {})
    if record.get("dataset_fingerprint") is not None:
        filled.setdefault("dataset_fingerprint", record["dataset_fingerprint"])
    filled.setdefault("lineage", dict(record))
    return filled


def _tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    return dict(check_tag(k, v) for k, v in (tags or {}).items())
