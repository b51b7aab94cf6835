"""Engines configured the way tasktrail needs them on each database.

SQLite: WAL (readers never block the writer), a generous busy timeout, foreign keys on, and
``BEGIN IMMEDIATE`` for write transactions so two writers queue up instead of one failing
with "database is locked" when it upgrades a read lock. PostgreSQL: psycopg 3.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

#: Execution option that marks a connection as about to write.
WRITE = "tasktrail_write"
_SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str | URL) -> URL:
    """The URL with tasktrail's preferred driver for its database."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url``, configured for tasktrail's concurrency on that database."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kwargs)


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", _SQLITE_BUSY_TIMEOUT_MS / 1000)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    install_sqlite_transactions(engine)
    return engine


def install_sqlite_transactions(engine: Engine) -> None:
    """Make SQLAlchemy, not the sqlite3 module, own transactions on ``engine``.

    This is SQLAlchemy's documented recipe for pysqlite; it lets write transactions start
    with ``BEGIN IMMEDIATE``.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
