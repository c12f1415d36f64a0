"""The registry's tables. Alembic revisions create them; this module is what the
store queries and what the migration test compares the migrated database with.

Times are epoch milliseconds (no time-zone handling differs between SQLite and
PostgreSQL). Version numbers come from `registered_models.next_version`, so a
deleted version's number is never handed out again and lineage stays unambiguous.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TAG_KEY_MAX = 250
TAG_VALUE_MAX = 5000
DEVICE_ID_MAX = 128


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ModelRow(Base):
    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    next_version: Mapped[int] = mapped_column(Integer, default=1)

    tags: Mapped[list[ModelTagRow]] = relationship(cascade="all, delete-orphan")
    aliases: Mapped[list[AliasRow]] = relationship(cascade="all, delete-orphan")


class ModelTagRow(Base):
    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(TAG_KEY_MAX), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(String(256))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    recipe: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    model: Mapped[ModelRow] = relationship()
    files: Mapped[list[FileRow]] = relationship(
        cascade="all, delete-orphan", order_by="FileRow.path"
    )
    tags: Mapped[list[VersionTagRow]] = relationship(cascade="all, delete-orphan")
    metrics: Mapped[list[MetricRow]] = relationship(cascade="all, delete-orphan")
    parents: Mapped[list[ParentRow]] = relationship(
        cascade="all, delete-orphan",
        foreign_keys="ParentRow.child_id",
        order_by="ParentRow.position",
    )


class FileRow(Base):
    __tablename__ = "version_files"
    __table_args__ = (Index("ix_version_files_sha256", "sha256"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)


class VersionTagRow(Base):
    __tablename__ = "version_tags"
    __table_args__ = (Index("ix_version_tags_key", "key"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(TAG_KEY_MAX), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MetricRow(Base):
    __tablename__ = "version_metrics"
    __table_args__ = (Index("ix_version_metrics_key_value", "key", "value"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(TAG_KEY_MAX), primary_key=True)
    value: Mapped[float] = mapped_column(Double)


class ParentRow(Base):
    """A lineage edge. The parent's name and number are kept so that a deleted parent
    still shows in the lineage; `parent_id` turns NULL when it goes."""

    __tablename__ = "version_parents"
    __table_args__ = (Index("ix_version_parents_parent_id", "parent_id"),)

    child_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    parent_name: Mapped[str] = mapped_column(String(128))
    parent_version: Mapped[int] = mapped_column(Integer)


class AliasRow(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    # No cascade: deleting an aliased version is refused, and the database backs that up.
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    version: Mapped[VersionRow] = relationship()


class DeviceRow(Base):
    """An edge device's last report. No foreign key: a device that still runs a version
    deleted since must keep saying so."""

    __tablename__ = "edge_devices"
    __table_args__ = (Index("ix_edge_devices_model", "model"),)

    device_id: Mapped[str] = mapped_column(String(DEVICE_ID_MAX), primary_key=True)
    model_uri: Mapped[str] = mapped_column(String(256))
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)
    agent_time: Mapped[str | None] = mapped_column(String(64))
    reported_ms: Mapped[int] = mapped_column(BigInteger)


#: Not alembic's default name, so that a database shared with another alembic user is safe.
VERSION_TABLE = "aiaas_registry_alembic_version"
