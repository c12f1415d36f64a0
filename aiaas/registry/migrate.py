"""Schema migrations, run programmatically when a registry is opened.

Many processes may open a fresh registry at once; the first to take the lock
(SQLite's write lock, a PostgreSQL advisory lock) migrates, the others find the
schema current when they get it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, text

from aiaas.errors import FailedPrecondition
from aiaas.registry.db import Database
from aiaas.registry.schema import VERSION_TABLE

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
#: Any fixed number: the key of the PostgreSQL advisory lock that serialises migrations.
_PG_LOCK_KEY = 0x41_49_41_41_53_52_45_47


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def ensure_current(database: Database) -> None:
    """Upgrade to head unless already there; refuse a database newer than this code."""
    head = head_revision()
    if current_revision(database) == head:
        return
    upgrade(database, head)


def upgrade(database: Database, revision: str = "head") -> None:
    with _locked_connection(database) as connection:
        _check_known(connection)
        command.upgrade(_config(connection), revision)


def downgrade(database: Database, revision: str = "base") -> None:
    with _locked_connection(database) as connection:
        _check_known(connection)
        command.downgrade(_config(connection), revision)


def _check_known(connection: Connection) -> None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    current = context.get_current_revision()
    if current is None:
        return
    try:
        ScriptDirectory.from_config(_config()).get_revision(current)
    except CommandError:
        raise FailedPrecondition(
            f"the registry database is at schema revision {current!r}, which this version of "
            "aiaas does not know; upgrade aiaas"
        ) from None


@contextmanager
def _locked_connection(database: Database) -> Iterator[Connection]:
    """A connection inside a write transaction that also holds the migration lock."""
    with database.write_connection() as connection:
        if database.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield connection
