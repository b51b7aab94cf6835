"""A partial index of scheduled tasks' due times: the worker's look for the next due time
and for the tasks that are due reads its first entries instead of every scheduled task.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEDULED = sa.text("status = 'scheduled'")


def upgrade() -> None:
    op.create_index(
        "ix_tasktrail_tasks_due",
        "tasktrail_tasks",
        ["run_after"],
        postgresql_where=SCHEDULED,
        sqlite_where=SCHEDULED,
    )


def downgrade() -> None:
    op.drop_index("ix_tasktrail_tasks_due", table_name="tasktrail_tasks")
