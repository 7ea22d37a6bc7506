"""Concurrency limits: ``runs.concurrency_key`` (the rendered ``concurrency.key``) and
the index admission uses to count a key's active runs and take its held ones in order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_runs_concurrency_key_status_created_at"


def upgrade() -> None:
    # A nullable column with no default: an instant change on both databases, and runs
    # from before the upgrade simply have no key (they never count against a limit).
    op.add_column("runs", sa.Column("concurrency_key", sa.String(length=300), nullable=True))
    op.create_index(op.f(_INDEX), "runs", ["concurrency_key", "status", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f(_INDEX), table_name="runs")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("concurrency_key")
