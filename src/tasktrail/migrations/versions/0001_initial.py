"""Tasks, links, events and items.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types: a migration must not change when schema.py does.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tasktrail_tasks",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("progress", sa.Float(), server_default="0", nullable=False),
        sa.Column("current_step", sa.String(200)),
        sa.Column("result", JSON),
        sa.Column("error", sa.Text()),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("backoff", sa.Float(), server_default="2", nullable=False),
        sa.Column("queue", sa.String(100), server_default="default", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("dedupe_key", sa.String(300)),
        sa.Column("description", sa.Text()),
        sa.Column("run_after", TIME),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("queued_at", TIME),
        sa.Column("started_at", TIME),
        sa.Column("completed_at", TIME),
        sa.Column("heartbeat_at", TIME),
        sa.Column("cancel_requested_at", TIME),
        sa.Column("worker", sa.String(200)),
        sa.Column("external_id", sa.String(200)),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasktrail_tasks"),
        sa.UniqueConstraint("dedupe_key", name="uq_tasktrail_tasks_dedupe_key"),
    )
    op.create_index("ix_tasktrail_tasks_name_id", "tasktrail_tasks", ["name", "id"])
    op.create_index(
        "ix_tasktrail_tasks_status_heartbeat_at", "tasktrail_tasks", ["status", "heartbeat_at"]
    )
    op.create_index(
        "ix_tasktrail_tasks_status_queue_priority_run_after",
        "tasktrail_tasks",
        ["status", "queue", "priority", "run_after"],
    )
    op.create_table(
        "tasktrail_links",
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("resource_type", sa.String(100), nullable=False),
        sa.Column("resource_id", sa.String(200), nullable=False),
        sa.Column("role", sa.String(100)),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasktrail_tasks.id"],
            name="fk_tasktrail_links_task_id_tasktrail_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "task_id", "resource_type", "resource_id", name="pk_tasktrail_links"
        ),
    )
    op.create_index(
        "ix_tasktrail_links_resource_type_resource_id_task_id",
        "tasktrail_links",
        ["resource_type", "resource_id", "task_id"],
    )
    op.create_table(
        "tasktrail_events",
        sa.Column("id", EVENT_ID, autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(30), nullable=False),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20)),
        sa.Column("progress", sa.Float()),
        sa.Column("step", sa.String(200)),
        sa.Column("message", sa.Text()),
        sa.Column("data", JSON),
        sa.Column("actor", sa.String(200)),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasktrail_tasks.id"],
            name="fk_tasktrail_events_task_id_tasktrail_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tasktrail_events"),
    )
    op.create_index("ix_tasktrail_events_task_id_id", "tasktrail_events", ["task_id", "id"])
    op.create_table(
        "tasktrail_items",
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasktrail_tasks.id"],
            name="fk_tasktrail_items_task_id_tasktrail_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "key", name="pk_tasktrail_items"),
    )


def downgrade() -> None:
    op.drop_table("tasktrail_items")
    op.drop_index("ix_tasktrail_events_task_id_id", table_name="tasktrail_events")
    op.drop_table("tasktrail_events")
    op.drop_index(
        "ix_tasktrail_links_resource_type_resource_id_task_id", table_name="tasktrail_links"
    )
    op.drop_table("tasktrail_links")
    for index in (
        "ix_tasktrail_tasks_status_queue_priority_run_after",
        "ix_tasktrail_tasks_status_heartbeat_at",
        "ix_tasktrail_tasks_name_id",
    ):
        op.drop_index(index, table_name="tasktrail_tasks")
    op.drop_table("tasktrail_tasks")
