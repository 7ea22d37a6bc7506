"""Partial indexes for the steps and attempts that wait or run.

A step's status index and the claim index held every step, so each transition of a
step (pending → running → succeeded) rewrote index entries in two indexes, and each
attempt two more: about half of the pages a step's commit wrote to SQLite's WAL. The
new indexes hold only steps that are queued, retrying or waiting, and attempts that
are running, which are the only rows the claim, timer and lease queries look for.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _where(predicate: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(predicate), "postgresql_where": sa.text(predicate)}


def upgrade() -> None:
    op.drop_index("ix_steps_claim", table_name="steps")
    op.drop_index("ix_steps_status_available_at", table_name="steps")
    op.drop_index("ix_attempts_status_lease_until", table_name="attempts")
    op.drop_index("ix_attempts_worker", table_name="attempts")
    op.create_index(
        "ix_steps_queued",
        "steps",
        ["queue", sa.text("priority DESC"), "available_at"],
        **_where("status = 'queued'"),
    )
    op.create_index(
        "ix_steps_retrying", "steps", ["queue", "available_at"], **_where("status = 'retrying'")
    )
    op.create_index("ix_steps_waiting", "steps", ["available_at"], **_where("status = 'waiting'"))
    op.create_index(
        "ix_attempts_running", "attempts", ["worker", "lease_until"], **_where("status = 'running'")
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_running", table_name="attempts")
    op.drop_index("ix_steps_waiting", table_name="steps")
    op.drop_index("ix_steps_retrying", table_name="steps")
    op.drop_index("ix_steps_queued", table_name="steps")
    op.create_index("ix_attempts_worker", "attempts", ["worker"])
    op.create_index("ix_attempts_status_lease_until", "attempts", ["status", "lease_until"])
    op.create_index("ix_steps_status_available_at", "steps", ["status", "available_at"])
    op.create_index(
        "ix_steps_claim", "steps", ["status", "queue", sa.text("priority DESC"), "available_at"]
    )
