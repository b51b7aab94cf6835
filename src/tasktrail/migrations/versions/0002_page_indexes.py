"""Indexes for filtered task pages, claiming and a resource's active tasks.

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
ACTIVE = sa.text("status IN ('queued', 'scheduled', 'running')")


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
    op.create_index(
        "ix_tasktrail_tasks_active",
        "tasktrail_tasks",
        ["id"],
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )


def downgrade() -> None:
    for index in (
        "ix_tasktrail_tasks_active",
        "ix_tasktrail_tasks_claim",
        "ix_tasktrail_tasks_queue_id",
        "ix_tasktrail_tasks_status_id",
    ):
        op.drop_index(index, table_name="tasktrail_tasks")
