"""Edge devices: each agent's last report (model, version, state, counts, last error).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edge_devices",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("model_uri", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("agent_time", sa.String(length=64), nullable=True),
        sa.Column("reported_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_edge_devices")),
    )
    op.create_index("ix_edge_devices_model", "edge_devices", ["model"])


def downgrade() -> None:
    op.drop_index("ix_edge_devices_model", table_name="edge_devices")
    op.drop_table("edge_devices")
