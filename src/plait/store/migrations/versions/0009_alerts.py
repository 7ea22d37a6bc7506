"""Alert rules: rule definitions and alert states with their notifications.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in plait.store.tables: a migration never changes later.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alert_rules")),
    )
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("info", JSON, nullable=False),
        sa.Column("since", sa.Double(), nullable=False),
        sa.Column("firing_since", sa.Double(), nullable=True),
        sa.Column("last_notified_at", sa.Double(), nullable=True),
        sa.Column("alert_id", sa.BigInteger(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "key", name=op.f("pk_alert_states")),
    )
    _alerts()
    _notifications()


def _alerts() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("info", JSON, nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("resolved_at", sa.Double(), nullable=True),
        sa.Column("last_notified_at", sa.Double(), nullable=True),
        sa.Column("notifications", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_state_started_at"), "alerts", ["state", "started_at"])
    op.create_index(op.f("ix_alerts_started_at"), "alerts", ["started_at"])
    op.create_index(op.f("ix_alerts_rule_started_at"), "alerts", ["rule", "started_at"])


def _notifications() -> None:
    op.create_table(
        "alert_notifications",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=True),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("notice", JSON, nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
    )
    op.create_index(
        op.f("ix_alert_notifications_status_next_attempt_at"),
        "alert_notifications",
        ["status", "next_attempt_at"],
    )
    op.create_index(op.f("ix_alert_notifications_alert_id"), "alert_notifications", ["alert_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_notifications_alert_id"), table_name="alert_notifications")
    op.drop_index(
        op.f("ix_alert_notifications_status_next_attempt_at"), table_name="alert_notifications"
    )
    op.drop_table("alert_notifications")
    op.drop_index(op.f("ix_alerts_rule_started_at"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_started_at"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_state_started_at"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_states")
    op.drop_table("alert_rules")
