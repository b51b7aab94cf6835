"""The tables, as SQLAlchemy Core. Every name is prefixed ``tasktrail_`` so the tables can
live in the application's own database beside its own tables.

The Alembic migrations in ``tasktrail/migrations`` must produce exactly this metadata; a
test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

PREFIX = "tasktrail_"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware.

    SQLite has no time zones; PostgreSQL gets ``timestamptz``. Naive values are refused:
    a time without a zone is a bug waiting for a server in another zone.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give it a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        # In place of the process_result_value hook, which SQLAlchemy wraps in two calls
        # per value; a task has eight timestamps, and one call less took 5 % off reading
        # 80 tasks. The type's own processor (SQLite's parsing of text) still runs first.
        parse = self.impl_instance.result_processor(dialect, coltype)
        if parse is None:
            return _as_utc
        return lambda value: _as_utc(parse(value))


def _as_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC: a naive one (SQLite's) is taken to be in UTC already."""
    if value is None or value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType: sa.types.TypeEngine[Any] = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

tasks = sa.Table(
    f"{PREFIX}tasks",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("current_step", sa.String(200)),
    sa.Column("result", JSONType),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("backoff", sa.Float, nullable=False, server_default="2"),
    sa.Column("queue", sa.String(100), nullable=False, server_default="default"),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dedupe_key", sa.String(300), unique=True),
    sa.Column("description", sa.Text),
    sa.Column("run_after", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("queued_at", UTCDateTime),
    sa.Column("started_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("heartbeat_at", UTCDateTime),
    sa.Column("cancel_requested_at", UTCDateTime),
    sa.Column("worker", sa.String(200)),
    sa.Column("external_id", sa.String(200)),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Index(None, "status", "queue", "priority", "run_after"),
    sa.Index(None, "status", "heartbeat_at"),
    sa.Index(None, "name", "id"),
    # Filtered keyset pages (newest first within a status or a queue).
    sa.Index(None, "status", "id"),
    sa.Index(None, "queue", "id"),
)

# Keep these predicates equal to migrations 0002's and 0003's: autogenerate compares an index's
# columns but not its WHERE clause.
_QUEUED = sa.text("status = 'queued'")
_SCHEDULED = sa.text("status = 'scheduled'")
_ACTIVE_LINK = sa.text("active")
# Claiming reads the best queued task: the index holds only queued rows, in claim order.
CLAIM_INDEX = "ix_tasktrail_tasks_claim"
sa.Index(
    CLAIM_INDEX,
    tasks.c.priority.desc(),
    tasks.c.id,
    postgresql_where=_QUEUED,
    sqlite_where=_QUEUED,
)

# When the next scheduled task falls due, and which ones are due: the earliest first, read
# from the start of the index however many tasks are scheduled (migration 0003).
DUE_INDEX = "ix_tasktrail_tasks_due"
sa.Index(DUE_INDEX, tasks.c.run_after, postgresql_where=_SCHEDULED, sqlite_where=_SCHEDULED)

links = sa.Table(
    f"{PREFIX}links",
    metadata,
    sa.Column(
        "task_id",
        sa.String(32),
        sa.ForeignKey(tasks.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("resource_type", sa.String(100), primary_key=True),
    sa.Column("resource_id", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(100)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Whether the task is queued, scheduled or running: kept by the store in the same
    # transaction as every status change that crosses that line.
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index(None, "resource_type", "resource_id", "task_id"),
)
# A resource's active tasks: a small index however many finished tasks it has.
ACTIVE_LINKS_INDEX = "ix_tasktrail_links_active"
sa.Index(
    ACTIVE_LINKS_INDEX,
    links.c.resource_type,
    links.c.resource_id,
    links.c.task_id,
    postgresql_where=_ACTIVE_LINK,
    sqlite_where=_ACTIVE_LINK,
)

events = sa.Table(
    f"{PREFIX}events",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column(
        "task_id",
        sa.String(32),
        sa.ForeignKey(tasks.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("type", sa.String(30), nullable=False),
    sa.Column("from_status", sa.String(20)),
    sa.Column("to_status", sa.String(20)),
    sa.Column("progress", sa.Float),
    sa.Column("step", sa.String(200)),
    sa.Column("message", sa.Text),
    sa.Column("data", JSONType),
    sa.Column("actor", sa.String(200)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "task_id", "id"),
)

items = sa.Table(
    f"{PREFIX}items",
    metadata,
    sa.Column(
        "task_id",
        sa.String(32),
        sa.ForeignKey(tasks.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
