"""Alembic environment for the registry; only ever run through `aiaas.registry.migrate`,
which hands over a connection already inside the transaction (and lock) it wants."""

from __future__ import annotations

from alembic import context

from aiaas.registry.schema import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "registry migrations run through aiaas.registry.migrate, not the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
