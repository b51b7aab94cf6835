"""Engines configured the way tasktrail needs them on each database.

SQLite: WAL (readers never block the writer) checkpointed every ``SQLITE_CHECKPOINT_PAGES``
pages, a generous busy timeout, foreign keys on, and ``BEGIN IMMEDIATE`` for write
transactions (``begin_writing``) so two writers queue up instead of one failing with
"database is locked" when it upgrades a read lock. PostgreSQL:
psycopg 3, a pooled connection that sat unused is checked before use (see
``ping_idle_connections``), sessions in UTC, and JSON decoded without ``json.loads``'s
detour (``json_from_driver``).

No engine here has a listener of connection events: once an engine has one, SQLAlchemy
dispatches the events of every statement of every connection of it (before and after
execute, before and after the cursor's), found to be a fifth of a worker's instructions per
task. Pool events (``connect``, ``checkout``, ``checkin``) cost nothing per statement.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

#: Seconds a pooled connection may sit unused before it is checked at checkout.
PING_AFTER_IDLE = 1.0
_IDLE_SINCE = "tasktrail_idle_since"
_SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How many pages a SQLite file's write-ahead log holds before a commit checkpoints it into
#: the database file (SQLite's default: 1,000). A checkpoint writes the latest version of
#: each page in the log back and waits for two fsyncs, in the thread whose commit crossed
#: the mark. A task's five commits append 25-30 pages, mostly the same few again (its row,
#: the events' last page, their indexes), so a log four times as long (16 MB) needs a
#: quarter of the checkpoints, each copying barely more pages: drains of 5,000 tasks by
#: two worker processes ran 3-13 % faster.
SQLITE_CHECKPOINT_PAGES = 4_000


def normalize_url(url: str | URL) -> URL:
    """The URL with tasktrail's preferred driver for its database."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine(
    url: str | URL, *, ping_after_idle: float | None = PING_AFTER_IDLE, **kwargs: Any
) -> Engine:
    """An engine for ``url``, configured for tasktrail's concurrency on that database.

    A server connection taken from the pool after ``ping_after_idle`` seconds unused is
    checked first and, if the server closed it meanwhile (a restart, an idle timeout),
    silently replaced (None: never checked; ``pool_pre_ping=True``: checked every time).
    Other keyword arguments go to ``sqlalchemy.create_engine``; a ``json_deserializer``
    given there replaces ``json_from_driver``.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    # Reuse the connection used last: the others stay idle (and unpinged) instead of each
    # being taken in turn and found idle for longer than ping_after_idle.
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_use_lifo", True)
    kwargs.setdefault("json_deserializer", json_from_driver)
    engine = sa.create_engine(parsed, **kwargs)
    if ping_after_idle is not None and not kwargs.get("pool_pre_ping"):
        ping_idle_connections(engine, ping_after_idle)
    sessions_in_utc(engine)
    return engine


_DECODER = json.JSONDecoder()


def json_from_driver(data: bytes | str) -> Any:
    """The value of a JSON document as PostgreSQL's driver hands it over (UTF-8 bytes from
    psycopg, text from psycopg2): what ``json.loads`` returns for it, or raises.

    ``json.loads`` first guesses the encoding of bytes (UTF-8, -16 or -32; of these, a
    server's JSON can only be UTF-8) through two more calls, then looks for whitespace
    before and after the document with two regular expressions. A read of tasks decodes
    two documents per task (its parameters and its links), and those detours were 14 % of
    the client's instructions for a ``status_check`` of 80 active tasks. A document that
    does not end where its value ends (whitespace around it, or anything else) goes to the
    full decoder."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "surrogatepass")
    try:
        value, end = _DECODER.raw_decode(data)
    except json.JSONDecodeError:
        return _DECODER.decode(data)  # whitespace first, or not JSON: decode says which
    return value if end == len(data) else _DECODER.decode(data)


def sessions_in_utc(engine: Engine) -> None:
    """Set the time zone of each new session of ``engine`` (PostgreSQL) to UTC.

    Timestamps are stored as ``timestamptz`` and read back as UTC whatever the session's
    zone; but in a zone by another name (Debian's servers default to ``Etc/UTC``) the
    driver builds every timestamp it reads in that zone and tasktrail converts it: a fifth
    of the time a page of 50 tasks with their links took to read.
    """

    @sa.event.listens_for(engine, "connect")
    def _set_utc(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.close()
        dbapi_connection.commit()  # a SET rolled back with its transaction would not hold


def ping_idle_connections(engine: Engine, after: float) -> None:
    """Check each connection that sat in ``engine``'s pool for ``after`` seconds or more
    before handing it out, and replace it if the server has closed it.

    SQLAlchemy's ``pool_pre_ping`` checks at every checkout: one more round trip per
    transaction, on the worker's hottest path. A connection back from use a moment ago
    needs none; one that waited out a server restart does. This is SQLAlchemy's documented
    custom pessimistic check: a ``checkout`` listener that raises ``DisconnectionError``.
    """

    @sa.event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < after:
            return  # new, or used a moment ago
        _ping(engine.dialect, dbapi_connection)


def is_alive(conn: sa.Connection) -> bool:
    """Whether the server still answers on ``conn``; when it has closed it, False, and
    ``conn`` is invalidated. Any other error of the check is raised."""
    try:
        _ping(conn.dialect, conn.connection.dbapi_connection)
    except sa.exc.DisconnectionError:
        conn.invalidate()
        return False
    return True


def _ping(dialect: sa.Dialect, dbapi_connection: Any) -> None:
    """``DisconnectionError`` when the server has closed ``dbapi_connection``."""
    try:
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as error:
        if dialect.is_disconnect(error, dbapi_connection, None):
            raise sa.exc.DisconnectionError(str(error)) from error
        raise


def detached_connection(engine: Engine) -> Any:
    """A new DBAPI connection made exactly as ``engine`` makes its pooled ones (the same
    connect arguments and ``connect`` listeners), which the pool then forgets: for a
    listener that holds a connection of its own for as long as it runs."""
    pooled = engine.raw_connection()
    conn = pooled.driver_connection
    pooled.detach()
    assert conn is not None
    return conn


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", _SQLITE_BUSY_TIMEOUT_MS / 1000)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    install_sqlite_transactions(engine)
    return engine


def install_sqlite_transactions(engine: Engine) -> None:
    """Make SQLAlchemy, not the sqlite3 module, own transactions on ``engine``: each begins
    with a ``BEGIN`` (or, through ``begin_writing``, ``BEGIN IMMEDIATE``), so that a read
    inside it sees one snapshot and a savepoint works.

    This is SQLAlchemy's documented recipe for pysqlite, but for where the ``BEGIN`` is
    sent: from the dialect's ``do_begin`` (a no-op for pysqlite, called at the start of
    every transaction) instead of a ``begin`` listener, which would make SQLAlchemy
    dispatch connection events around every statement (see the module's docstring).
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        cursor.close()

    engine.dialect.do_begin = _begin_unless_begun  # type: ignore[method-assign]


def _begin_unless_begun(dbapi_connection: Any) -> None:
    # On the driver's connection itself: SQLAlchemy's statement machinery costs several
    # times what SQLite spends beginning. Already begun: by begin_writing.
    driver = dbapi_connection.driver_connection
    if not driver.in_transaction:
        driver.execute("BEGIN")


def begin_writing(conn: sa.Connection) -> sa.RootTransaction:
    """Begin a transaction on ``conn`` (which has none) that is going to write. On SQLite
    it takes the file's write lock at once (``BEGIN IMMEDIATE``, waiting behind other
    writers for up to the busy timeout): a transaction that read first and then asked for
    the lock would fail with "database is locked" whenever another writer got in between.
    Elsewhere, a plain ``begin``."""
    if conn.dialect.name == "sqlite":
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE")
    return conn.begin()
