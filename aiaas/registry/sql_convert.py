"""Rows into records, inside the session that loaded them, so no lazy load ever runs
after the session is gone."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from aiaas.registry.records import (
    ArtifactFile,
    ModelVersion,
    RegisteredModel,
    Signature,
    VersionRef,
)
from aiaas.registry.schema import (
    AliasRow,
    FileRow,
    MetricRow,
    ModelRow,
    ParentRow,
    VersionRow,
    VersionTagRow,
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


#: A version's own columns and its model's name: one row per version, no ORM entities
#: (reads are the hot path of serving by alias, and column rows cost a fraction).
VERSION_COLUMNS = (
    VersionRow.id,
    ModelRow.name,
    VersionRow.version,
    VersionRow.description,
    VersionRow.created_ms,
    VersionRow.sha256,
    VersionRow.size_bytes,
    VersionRow.signature,
    VersionRow.run_id,
    VersionRow.params,
    VersionRow.recipe,
)
#: Bind parameters per IN list: well under SQLite's and PostgreSQL's limits.
_CHUNK = 500


def versions_query() -> Select[Any]:
    return select(*VERSION_COLUMNS).join(ModelRow, VersionRow.model_id == ModelRow.id)


def read_versions(session: Session, query: Select[Any]) -> list[ModelVersion]:
    """Run a `versions_query()`-based query and load each version's files, tags, metrics,
    parents and aliases with one query per kind (not per version)."""
    heads = session.execute(query).all()
    details = _Details(session, [head.id for head in heads])
    return [
        ModelVersion(
            name=head.name,
            version=head.version,
            description=head.description,
            created_at=to_datetime(head.created_ms),
            sha256=head.sha256,
            size_bytes=head.size_bytes,
            files=tuple(details.files[head.id]),
            signature=Signature.from_dict(head.signature),
            tags=dict(details.tags[head.id]),
            metrics=dict(details.metrics[head.id]),
            parents=tuple(details.parents[head.id]),
            run_id=head.run_id,
            params=head.params,
            recipe=head.recipe,
            aliases=tuple(details.aliases[head.id]),
        )
        for head in heads
    ]


class _Details:
    def __init__(self, session: Session, ids: list[int]) -> None:
        self.files: dict[int, list[ArtifactFile]] = defaultdict(list)
        self.tags: dict[int, list[tuple[str, str]]] = defaultdict(list)
        self.metrics: dict[int, list[tuple[str, float]]] = defaultdict(list)
        self.parents: dict[int, list[VersionRef]] = defaultdict(list)
        self.aliases: dict[int, list[str]] = defaultdict(list)
        for start in range(0, len(ids), _CHUNK):
            self._load(session, ids[start : start + _CHUNK])

    def _load(self, session: Session, ids: list[int]) -> None:
        for vid, path, sha256, size in session.execute(
            select(FileRow.version_id, FileRow.path, FileRow.sha256, FileRow.size_bytes)
            .where(FileRow.version_id.in_(ids))
            .order_by(FileRow.path)
        ):
            self.files[vid].append(ArtifactFile(path, sha256, size))
        for vid, key, value in session.execute(
            select(VersionTagRow.version_id, VersionTagRow.key, VersionTagRow.value)
            .where(VersionTagRow.version_id.in_(ids))
            .order_by(VersionTagRow.key)
        ):
            self.tags[vid].append((key, value))
        for vid, key, number in session.execute(
            select(MetricRow.version_id, MetricRow.key, MetricRow.value)
            .where(MetricRow.version_id.in_(ids))
            .order_by(MetricRow.key)
        ):
            self.metrics[vid].append((key, number))
        for vid, name, version in session.execute(
            select(ParentRow.child_id, ParentRow.parent_name, ParentRow.parent_version)
            .where(ParentRow.child_id.in_(ids))
            .order_by(ParentRow.position)
        ):
            self.parents[vid].append(VersionRef(name, version))
        for vid, alias in session.execute(
            select(AliasRow.version_id, AliasRow.alias)
            .where(AliasRow.version_id.in_(ids))
            .order_by(AliasRow.alias)
        ):
            self.aliases[vid].append(alias)


def version_record(row: VersionRow, aliases: tuple[str, ...] = ()) -> ModelVersion:
    return ModelVersion(
        name=row.model.name,
        version=row.version,
        description=row.description,
        created_at=to_datetime(row.created_ms),
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        files=tuple(ArtifactFile(f.path, f.sha256, f.size_bytes) for f in row.files),
        signature=Signature.from_dict(row.signature),
        tags={tag.key: tag.value for tag in sorted(row.tags, key=lambda tag: tag.key)},
        metrics={m.key: m.value for m in sorted(row.metrics, key=lambda m: m.key)},
        parents=tuple(VersionRef(p.parent_name, p.parent_version) for p in row.parents),
        run_id=row.run_id,
        params=row.params,
        recipe=row.recipe,
        aliases=aliases,
    )


def model_records(session: Session, rows: Sequence[ModelRow]) -> list[RegisteredModel]:
    """Models with their tags, aliases and version counts, in three queries for any number."""
    ids = [row.id for row in rows]
    if not ids:
        return []
    counts = {
        model_id: (count, latest)
        for model_id, count, latest in session.execute(
            select(VersionRow.model_id, func.count(), func.max(VersionRow.version))
            .where(VersionRow.model_id.in_(ids))
            .group_by(VersionRow.model_id)
        )
    }
    aliases: dict[int, dict[str, int]] = defaultdict(dict)
    for model_id, alias, number in session.execute(
        select(AliasRow.model_id, AliasRow.alias, VersionRow.version)
        .join(VersionRow, AliasRow.version_id == VersionRow.id)
        .where(AliasRow.model_id.in_(ids))
        .order_by(AliasRow.alias)
    ):
        aliases[model_id][alias] = number
    return [
        RegisteredModel(
            name=row.name,
            description=row.description,
            created_at=to_datetime(row.created_ms),
            updated_at=to_datetime(row.updated_ms),
            tags={tag.key: tag.value for tag in sorted(row.tags, key=lambda tag: tag.key)},
            aliases=aliases[row.id],
            latest_version=counts.get(row.id, (0, None))[1],
            version_count=counts.get(row.id, (0, None))[0],
        )
        for row in rows
    ]
