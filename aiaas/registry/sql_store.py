"""The registry store on SQLAlchemy: SQLite or PostgreSQL, one transaction per call.

Writes that touch a model take its row lock first (SELECT ... FOR UPDATE; on
SQLite the whole database is already locked by BEGIN IMMEDIATE), so version
numbers and aliases change one writer at a time. Version numbers come from the
model row's counter and the (model, version) unique constraint backs it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import Select, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload

from aiaas.errors import AlreadyExists, FailedPrecondition, NotFound
from aiaas.registry import sql_convert as convert
from aiaas.registry.db import Database
from aiaas.registry.faults import pause_point
from aiaas.registry.records import (
    DeviceReport,
    Lineage,
    MetricFilter,
    ModelVersion,
    NewVersion,
    RegisteredModel,
    VersionRef,
)
from aiaas.registry.schema import (
    AliasRow,
    DeviceRow,
    FileRow,
    MetricRow,
    ModelRow,
    ModelTagRow,
    ParentRow,
    VersionRow,
    VersionTagRow,
)
from aiaas.registry.sql_lineage import build_lineage
from aiaas.registry.sql_search import search_query
from aiaas.registry.store import AbstractStore
from aiaas.registry.uri import version_uri

T = TypeVar("T")


class SqlStore(AbstractStore):
    def __init__(self, database: Database) -> None:
        self.database = database

    def _read(self, work: Callable[[Session], T]) -> T:
        return self.database.run(work)

    def _write(self, work: Callable[[Session], T]) -> T:
        return self.database.run(work, write=True)

    # --- models -------------------------------------------------------------------------------
    def create_model(
        self, name: str, description: str | None = None, tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        def work(session: Session) -> RegisteredModel:
            now = convert.now_ms()
            row = ModelRow(name=name, description=description, created_ms=now, updated_ms=now)
            row.tags = [ModelTagRow(key=k, value=v) for k, v in (tags or {}).items()]
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise AlreadyExists(f"model {name!r} already exists") from None
            return convert.model_records(session, [row])[0]

        return self._write(work)

    def get_model(self, name: str) -> RegisteredModel:
        return self._read(
            lambda session: convert.model_records(session, [_model(session, name)])[0]
        )

    def list_models(self) -> list[RegisteredModel]:
        def work(session: Session) -> list[RegisteredModel]:
            query = select(ModelRow).options(selectinload(ModelRow.tags)).order_by(ModelRow.name)
            return convert.model_records(session, session.scalars(query).all())

        return self._read(work)

    def delete_model(self, name: str) -> None:
        def work(session: Session) -> None:
            model = _model(session, name, lock=True)
            if model.aliases:
                names = ", ".join(sorted(alias.alias for alias in model.aliases))
                raise FailedPrecondition(
                    f"model {name!r} still has aliases ({names}); delete them first"
                )
            session.execute(delete(ModelRow).where(ModelRow.id == model.id))

        self._write(work)

    def set_model_tags(self, name: str, tags: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        def work(session: Session) -> None:
            model = _model(session, name, lock=True)
            _replace_model_tags(session, model.id, tags, remove)
            model.updated_ms = convert.now_ms()

        self._write(work)

    # --- versions -----------------------------------------------------------------------------
    def create_version(self, name: str, new: NewVersion) -> ModelVersion:
        def work(session: Session) -> ModelVersion:
            model = self._model_for_new_version(session, name, new.description)
            identical = session.scalars(
                select(VersionRow.version)
                .where(VersionRow.model_id == model.id, VersionRow.sha256 == new.sha256)
                .order_by(VersionRow.version)
            ).all()
            parents = [_version(session, ref.name, ref.version) for ref in new.parents]
            row = VersionRow(
                model=model,
                version=model.next_version,
                description=new.description,
                created_ms=convert.now_ms(),
                sha256=new.sha256,
                size_bytes=new.size_bytes,
                signature=new.signature.to_dict(),
                run_id=new.run_id,
                params=new.params,
                recipe=new.recipe,
            )
            row.files = [
                FileRow(path=f.path, sha256=f.sha256, size_bytes=f.size_bytes) for f in new.files
            ]
            row.tags = [VersionTagRow(key=k, value=v) for k, v in new.tags.items()]
            row.metrics = [MetricRow(key=k, value=v) for k, v in new.metrics.items()]
            row.parents = [
                ParentRow(
                    position=i, parent_id=p.id, parent_name=p.model.name, parent_version=p.version
                )
                for i, p in enumerate(parents)
            ]
            model.next_version += 1
            model.updated_ms = row.created_ms
            session.add(row)
            session.flush()
            pause_point("version-inserted")
            refs = tuple(VersionRef(name, number) for number in identical)
            return replace(convert.version_record(row), identical_to=refs)

        created = self._write(work)
        pause_point("committed")
        return created

    def _model_for_new_version(
        self, session: Session, name: str, description: str | None
    ) -> ModelRow:
        """The model row, locked; created first if this is its first version."""
        model = session.scalars(_model_query(name).with_for_update()).one_or_none()
        if model is not None:
            return model
        now = convert.now_ms()
        insert = postgresql_insert if self.database.dialect == "postgresql" else sqlite_insert
        session.execute(
            insert(ModelRow)
            .values(
                name=name, description=description, created_ms=now, updated_ms=now, next_version=1
            )
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return session.scalars(_model_query(name).with_for_update()).one()

    def get_version(self, name: str, version: int) -> ModelVersion:
        query = _named(name).where(VersionRow.version == version)
        return self._read(
            lambda session: _one(session, query, name, f"{version_uri(name, version)} not found")
        )

    def get_latest_version(self, name: str) -> ModelVersion:
        query = _named(name).order_by(VersionRow.version.desc()).limit(1)
        return self._read(
            lambda session: _one(session, query, name, f"model {name!r} has no versions")
        )

    def list_versions(self, name: str) -> list[ModelVersion]:
        def work(session: Session) -> list[ModelVersion]:
            found = convert.read_versions(session, _named(name).order_by(VersionRow.version))
            if not found:
                _model(session, name)
            return found

        return self._read(work)

    def delete_version(self, name: str, version: int) -> None:
        def work(session: Session) -> None:
            model = _model(session, name, lock=True)
            row = _version(session, name, version)
            aliases = sorted(alias.alias for alias in model.aliases if alias.version_id == row.id)
            if aliases:
                raise FailedPrecondition(
                    f"{version_uri(name, version)} is aliased as {', '.join(aliases)}; "
                    "move or delete the alias first"
                )
            session.execute(delete(VersionRow).where(VersionRow.id == row.id))

        self._write(work)

    def set_version_tags(
        self, name: str, version: int, tags: dict[str, str], remove: tuple[str, ...] = ()
    ) -> None:
        def work(session: Session) -> None:
            row = _version(session, name, version)
            _replace_version_tags(session, row.id, tags, remove)

        self._write(work)

    def search_versions(
        self, tags: dict[str, str], metrics: list[MetricFilter], name: str | None = None
    ) -> list[ModelVersion]:
        def work(session: Session) -> list[ModelVersion]:
            query = search_query(convert.versions_query(), tags, metrics, name)
            return convert.read_versions(session, query)

        return self._read(work)

    def lineage(self, name: str, version: int) -> Lineage:
        return self._read(lambda session: build_lineage(session, _version(session, name, version)))

    # --- aliases ------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int) -> None:
        def work(session: Session) -> None:
            model = _model(session, name, lock=True)
            target = _version(session, name, version)
            row = session.get(AliasRow, (model.id, alias))
            if row is None:
                session.add(AliasRow(model_id=model.id, alias=alias, version_id=target.id))
            else:
                row.version_id = target.id
            model.updated_ms = convert.now_ms()

        self._write(work)

    def delete_alias(self, name: str, alias: str) -> None:
        def work(session: Session) -> None:
            model = _model(session, name, lock=True)
            row = session.get(AliasRow, (model.id, alias))
            if row is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            session.delete(row)
            model.updated_ms = convert.now_ms()

        self._write(work)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        query = _named(name).join(AliasRow, AliasRow.version_id == VersionRow.id)
        query = query.where(AliasRow.alias == alias)
        missing = f"model {name!r} has no alias {alias!r}"
        return self._read(lambda session: _one(session, query, name, missing))

    # --- edge devices -------------------------------------------------------------------------
    def put_device(self, report: DeviceReport) -> DeviceReport:
        values = {
            "device_id": report.device_id,
            "model_uri": report.model_uri,
            "model": report.model,
            "version": report.version,
            "sha256": report.sha256,
            "state": report.state,
            "counts": dict(report.counts),
            "last_error": report.last_error,
            "agent_time": report.agent_time,
            "reported_ms": convert.now_ms(),
        }
        insert = postgresql_insert if self.database.dialect == "postgresql" else sqlite_insert
        statement = insert(DeviceRow).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["device_id"],
            set_={key: statement.excluded[key] for key in values if key != "device_id"},
        )

        def work(session: Session) -> DeviceReport:
            session.execute(statement)
            return _device_record(session.get_one(DeviceRow, report.device_id))

        return self._write(work)

    def list_devices(self, model: str | None = None) -> list[DeviceReport]:
        query = select(DeviceRow).order_by(DeviceRow.device_id)
        if model is not None:
            query = query.where(DeviceRow.model == model)
        return self._read(lambda session: [_device_record(r) for r in session.scalars(query)])

    def referenced_blobs(self) -> set[str]:
        return self._read(lambda session: set(session.scalars(select(FileRow.sha256).distinct())))

    def close(self) -> None:
        self.database.dispose()


def _device_record(row: DeviceRow) -> DeviceReport:
    return DeviceReport(
        device_id=row.device_id,
        model_uri=row.model_uri,
        model=row.model,
        state=row.state,
        version=row.version,
        sha256=row.sha256,
        counts=dict(row.counts or {}),
        last_error=row.last_error,
        agent_time=row.agent_time,
        reported_at=convert.to_datetime(row.reported_ms),
    )


def _model_query(name: str) -> Select[ModelRow]:
    return select(ModelRow).where(ModelRow.name == name)


def _model(session: Session, name: str, *, lock: bool = False) -> ModelRow:
    query = _model_query(name).options(selectinload(ModelRow.tags), selectinload(ModelRow.aliases))
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFound(f"model {name!r} not found")
    return row


def _named(name: str) -> Select[Any]:
    return convert.versions_query().where(ModelRow.name == name)


def _one(session: Session, query: Select[Any], name: str, missing: str) -> ModelVersion:
    found = convert.read_versions(session, query)
    if not found:
        _model(session, name)  # an unknown model says so, rather than "version not found"
        raise NotFound(missing)
    return found[0]


def _version(session: Session, name: str, version: int) -> VersionRow:
    """The row itself, for writes and lineage (reads go through `convert.read_versions`)."""
    row = session.scalars(
        select(VersionRow)
        .options(joinedload(VersionRow.model))
        .join(ModelRow, VersionRow.model_id == ModelRow.id)
        .where(ModelRow.name == name, VersionRow.version == version)
    ).one_or_none()
    if row is None:
        _model(session, name)
        raise NotFound(f"{version_uri(name, version)} not found")
    return row


def _replace_model_tags(
    session: Session, model_id: int, tags: dict[str, str], remove: tuple[str, ...]
) -> None:
    keys = set(tags) | set(remove)
    session.execute(
        delete(ModelTagRow).where(ModelTagRow.model_id == model_id, ModelTagRow.key.in_(keys))
    )
    session.add_all(ModelTagRow(model_id=model_id, key=k, value=v) for k, v in tags.items())


def _replace_version_tags(
    session: Session, version_id: int, tags: dict[str, str], remove: tuple[str, ...]
) -> None:
    keys = set(tags) | set(remove)
    session.execute(
        delete(VersionTagRow).where(
            VersionTagRow.version_id == version_id, VersionTagRow.key.in_(keys)
        )
    )
    session.add_all(VersionTagRow(version_id=version_id, key=k, value=v) for k, v in tags.items())
