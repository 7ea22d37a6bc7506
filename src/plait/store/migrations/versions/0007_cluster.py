"""Cluster mode: step routing (queue, required worker tags, priority) with the index the
routed claim reads, and the worker registry.

The new ``steps`` columns have constant defaults, so adding them is instant on both
databases and steps from before the upgrade are in queue ``default``, need no tags and
have priority 0. Building ``ix_steps_claim`` reads the whole ``steps`` table once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the type in plait.store.tables: a migration never changes later.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column(
        "steps", sa.Column("queue", sa.String(length=100), nullable=False, server_default="default")
    )
    op.add_column("steps", sa.Column("runs_on", JSON, nullable=False, server_default="{}"))
    op.add_column("steps", sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    op.create_index(
        "ix_steps_claim",
        "steps",
        ["status", "queue", sa.text("priority DESC"), "available_at"],
        unique=False,
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=False),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index(
        op.f("ix_workers_state_heartbeat_at"), "workers", ["state", "heartbeat_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_workers_state_heartbeat_at"), table_name="workers")
    op.drop_table("workers")
    op.drop_index("ix_steps_claim", table_name="steps")
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_column("priority")
        batch_op.drop_column("runs_on")
        batch_op.drop_column("queue")
