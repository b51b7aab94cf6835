"""Indexes for filtered task pages and claiming; links know whether their task is active,
so a resource's active tasks are found without visiting its finished ones.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("status = 'queued'")
ACTIVE_LINK = sa.text("active")


def upgrade() -> None:
    op.create_index("ix_tasktrail_tasks_status_id", "tasktrail_tasks", ["status", "id"])
    op.create_index("ix_tasktrail_tasks_queue_id", "tasktrail_tasks", ["queue", "id"])
    op.create_index(
        "ix_tasktrail_tasks_claim",
        "tasktrail_tasks",
        [sa.text("priority DESC"), "id"],
        postgresql_where=QUEUED,
        sqlite_where=QUEUED,
    )
    op.add_column(
        "tasktrail_links",
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        sa.text(
            "UPDATE tasktrail_links SET active = :yes WHERE task_id IN (SELECT id FROM "
            "tasktrail_tasks WHERE status IN ('queued', 'scheduled', 'running'))"
        ).bindparams(yes=True)
    )
    op.create_index(
        "ix_tasktrail_links_active",
        "tasktrail_links",
        ["resource_type", "resource_id", "task_id"],
        postgresql_where=ACTIVE_LINK,
        sqlite_where=ACTIVE_LINK,
    )


def downgrade() -> None:
    op.drop_index("ix_tasktrail_links_active", table_name="tasktrail_links")
    with op.batch_alter_table("tasktrail_links") as batch:
        batch.drop_column("active")
    for index in (
        "ix_tasktrail_tasks_claim",
        "ix_tasktrail_tasks_queue_id",
        "ix_tasktrail_tasks_status_id",
    ):
        op.drop_index(index, table_name="tasktrail_tasks")
