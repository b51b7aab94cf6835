"""A connection a thread keeps for a while (a worker's run), for its one-statement reads and
writes on PostgreSQL, instead of taking one from the pool for each.

Each checkout costs SQLAlchemy's pool its bookkeeping and, for a statement in autocommit
mode, switching the connection into autocommit and back: together a third of the client's
CPU for one of a run's writes. A run makes four or more such writes in a row; keeping one
connection in autocommit mode for all of them pays that once.

A kept connection is taken only while the pool has one to spare and still one more of its
own, so that many threads keeping one (a worker of high concurrency, a pool of one) never
starve the others; a thread that finds none spare takes one per statement, as it would
without this. Like a pooled one (``engine.ping_idle_connections``), a kept connection
unused for ``PING_AFTER_IDLE`` seconds is checked before its next statement and replaced
if the server closed it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tasktrail.store.engine import PING_AFTER_IDLE, is_alive


class KeptConnections:
    """Each thread's kept connection on one engine, while it keeps one."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()

    @contextmanager
    def keeping(self) -> Iterator[None]:
        """Within the block, ``current()`` gives the calling thread one autocommit
        connection (taken at its first use, returned at the end), when the pool can spare
        one; otherwise ``current()`` stays None. Nested blocks share the outer one."""
        if getattr(self._local, "kept", None) is not None or not self._can_spare():
            yield
            return
        kept = _Kept(self._engine)
        self._local.kept = kept
        try:
            yield
        finally:
            self._local.kept = None
            kept.close()

    def current(self) -> Connection | None:
        """The calling thread's kept connection, ready for a statement; None outside
        ``keeping``, or when it found none to spare."""
        kept: _Kept | None = getattr(self._local, "kept", None)
        return None if kept is None else kept.ready()

    def _can_spare(self) -> bool:
        # Spare: taking it leaves at least one of the pool's own (not overflow) connections
        # for the threads that take one per statement (a worker's heartbeat, its claims).
        pool = self._engine.pool
        return isinstance(pool, sa.QueuePool) and pool.checkedout() < pool.size() - 1


class _Kept:
    """One thread's connection: opened at the first statement, checked after an idle
    spell, replaced once invalidated (SQLAlchemy invalidates it on a lost connection)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._used_at = 0.0

    def ready(self) -> Connection:
        now = time.monotonic()
        conn = self._conn
        if conn is not None and (
            conn.invalidated or (now - self._used_at >= PING_AFTER_IDLE and not is_alive(conn))
        ):
            conn.close()
            conn = None
        if conn is None:
            conn = self._engine.connect()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        self._used_at = now
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
