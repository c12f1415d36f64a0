"""The Alembic revisions: an empty database upgrades to exactly the schema the code
queries, and every revision downgrades cleanly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from aiaas.errors import FailedPrecondition
from aiaas.registry import migrate
from aiaas.registry.db import Database, resolve_uri
from aiaas.registry.schema import VERSION_TABLE, Base


def _tables(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def _differences(database: Database) -> list:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        return compare_metadata(context, Base.metadata)


def test_an_empty_database_upgrades_to_the_schema_the_code_uses(registry_uri):
    database = Database(resolve_uri(registry_uri))
    try:
        assert migrate.current_revision(database) is None
        migrate.ensure_current(database)
        assert migrate.current_revision(database) == migrate.head_revision()
        assert _differences(database) == []
        migrate.ensure_current(database)  # idempotent
    finally:
        database.dispose()


def test_head_downgrades_to_an_empty_database(registry_uri):
    database = Database(resolve_uri(registry_uri))
    try:
        migrate.upgrade(database)
        migrate.downgrade(database, "base")
        assert migrate.current_revision(database) is None
        assert _tables(database) <= {VERSION_TABLE}
    finally:
        database.dispose()


def test_every_revision_downgrades_to_its_predecessor_and_back(registry_uri):
    scripts = ScriptDirectory(str(migrate.SCRIPT_LOCATION))
    revisions = list(reversed(list(scripts.walk_revisions())))
    assert revisions, "no migrations found"
    database = Database(resolve_uri(registry_uri))
    try:
        for revision in revisions:
            migrate.upgrade(database, revision.revision)
            migrate.downgrade(database, revision.down_revision or "base")
            assert migrate.current_revision(database) == revision.down_revision
            migrate.upgrade(database, revision.revision)
        assert _differences(database) == []
    finally:
        database.dispose()


def test_a_database_from_a_newer_aiaas_is_refused(registry_uri):
    database = Database(resolve_uri(registry_uri))
    try:
        migrate.upgrade(database)
        with database.write_connection() as connection:
            connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'future'"))
        with pytest.raises(FailedPrecondition, match="upgrade aiaas"):
            migrate.ensure_current(database)
    finally:
        database.dispose()
