"""Insights: a partial index of the failed step attempts, newest first.

Failure clustering (``GET /api/v1/insights/failures``, ``plait insights failures``)
reads the latest few thousand attempts that failed or timed out. This index holds only
those, by start time: finding them costs the same beside millions of successful
attempts, and recording a success never writes to it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = "status IN ('failed', 'timed_out')"


def upgrade() -> None:
    op.create_index(
        "ix_attempts_failed",
        "attempts",
        ["started_at"],
        sqlite_where=sa.text(FAILED),
        postgresql_where=sa.text(FAILED),
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_failed", table_name="attempts")
