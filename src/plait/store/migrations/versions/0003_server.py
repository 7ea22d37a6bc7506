"""The server: deployments and labels, schedules and their fires, secrets, idempotency
keys, event consumer cursors; ``events.run_id`` becomes nullable for published events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 23:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in plait.store.tables: a migration never changes later.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _deployments()
    _schedules()
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False
    )
    op.create_table(
        "secrets",
        sa.Column("namespace", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sealed_value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "name", name=op.f("pk_secrets")),
    )
    op.create_table(
        "event_cursors",
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_event_cursors")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("run_id", existing_type=sa.String(length=64), nullable=True)


def _deployments() -> None:
    op.create_table(
        "deployments",
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("namespace", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name=op.f("fk_deployments_workflow_id_workflows")
        ),
        sa.PrimaryKeyConstraint("workflow_id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("name", name=op.f("uq_deployments_name")),
    )
    op.create_index(
        op.f("ix_deployments_namespace_name"), "deployments", ["namespace", "name"], unique=False
    )
    op.create_table(
        "workflow_labels",
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_labels_workflow_id_workflows"),
        ),
        sa.PrimaryKeyConstraint("workflow_id", "key", name=op.f("pk_workflow_labels")),
    )
    op.create_index(
        op.f("ix_workflow_labels_key_value"), "workflow_labels", ["key", "value"], unique=False
    )


def _schedules() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("namespace", sa.String(length=200), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=100), nullable=False),
        sa.Column("catch_up", sa.String(length=10), nullable=False),
        sa.Column("max_catch_up", sa.Integer(), nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("last_fire", sa.Double(), nullable=True),
        sa.Column("next_fire", sa.Double(), nullable=True),
        sa.Column("missed_count", sa.Integer(), nullable=False),
        sa.Column("last_missed", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_index(op.f("ix_schedules_workflow"), "schedules", ["workflow"], unique=False)
    op.create_index(op.f("ix_schedules_next_fire"), "schedules", ["next_fire"], unique=False)
    op.create_table(
        "schedule_fires",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("fire_key", sa.String(length=400), nullable=False),
        sa.Column("schedule_id", sa.String(length=300), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("fire_time", sa.Double(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("recorded_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint("fire_key", name=op.f("uq_schedule_fires_fire_key")),
    )
    op.create_index(
        op.f("ix_schedule_fires_workflow_fire_time"),
        "schedule_fires",
        ["workflow", "fire_time"],
        unique=False,
    )


def downgrade() -> None:
    # Published events have no run: they cannot survive the NOT NULL column.
    op.execute("DELETE FROM events WHERE run_id IS NULL")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("run_id", existing_type=sa.String(length=64), nullable=False)
    op.drop_table("event_cursors")
    op.drop_table("secrets")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_schedule_fires_workflow_fire_time"), table_name="schedule_fires")
    op.drop_table("schedule_fires")
    op.drop_index(op.f("ix_schedules_next_fire"), table_name="schedules")
    op.drop_index(op.f("ix_schedules_workflow"), table_name="schedules")
    op.drop_table("schedules")
    op.drop_index(op.f("ix_workflow_labels_key_value"), table_name="workflow_labels")
    op.drop_table("workflow_labels")
    op.drop_index(op.f("ix_deployments_namespace_name"), table_name="deployments")
    op.drop_table("deployments")
