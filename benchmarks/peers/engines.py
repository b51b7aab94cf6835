"""How the benchmark's tasktrail processes make their Trail: exactly as an application
would, with tasktrail's own engine settings (on PostgreSQL, a pooled connection is pinged
only after it sat idle: ``tasktrail.store.create_engine``); and how their commits are
counted on SQLite, which has no ``pg_stat_database``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tasktrail import Trail


def bench_trail(url: str | None, *, auto_migrate: bool | None = None) -> Trail:
    """A Trail on ``url``."""
    return Trail(url, auto_migrate=auto_migrate)


class SQLiteCommits:
    """Counts the ``COMMIT`` statements SQLite runs on the connections ``engine`` opens from
    now on (its pool is emptied), through sqlite3's trace callback. Not a ``commit``
    listener: that would make SQLAlchemy dispatch connection events around every
    statement, which tasktrail's engines avoid (a fifth of a worker's CPU per task)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        sa.event.listen(engine, "connect", self._trace)
        engine.dispose()

    def _trace(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(self._seen)

    def _seen(self, statement: str) -> None:
        if statement == "COMMIT":
            self.count += 1
