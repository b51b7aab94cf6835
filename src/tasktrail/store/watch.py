"""Hearing, across processes, that something was committed to a SQLite file.

SQLite has no ``NOTIFY``. But ``PRAGMA data_version`` changes whenever another connection,
in this process or any other, commits to the file, and reading it costs a few microseconds
of shared memory (no lock, no transaction). A watcher polls it on a connection of its own
and calls back when it moved: what PostgreSQL's ``LISTEN`` gives, a poll interval later,
so a worker in another process starts a submitted task within milliseconds instead of at
its next look at the queue, and the event feed tails other processes' events as closely.

The callback says only that something committed (a task queued, an event, any write): the
listener looks for itself.

A process that queues a task rings the file's ``bell`` after its commit, and a watcher
waits on the bell rather than sleeping: it looks at once, and its polling is what catches
the commits that ring nothing (other programs, a transaction of the application's own).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from tasktrail.store.bell import Bell, BellListener, bell_for
from tasktrail.store.engine import detached_connection
from tasktrail.store.reconnect import run_reconnecting

logger = logging.getLogger("tasktrail.watch")
#: Seconds between two looks at ``data_version``: the latency it adds, half of it on average.
WATCH_INTERVAL = 0.01


class CommitWatcher:
    """Calls ``on_commit()`` in its own thread soon after anything is committed to the
    SQLite file that ``connect`` opens, and once when it starts watching (commits made
    before cannot be told apart). Several commits between two looks make one call. With
    ``bell``, a ring makes it look at once."""

    def __init__(
        self,
        connect: Callable[[], Any],
        on_commit: Callable[[], None],
        *,
        interval: float = WATCH_INTERVAL,
        bell: Bell | None = None,
    ) -> None:
        self._connect = connect
        self._on_commit = on_commit
        self._interval = interval
        self._bell = bell
        self._listener: BellListener | None = None
        self._closed = threading.Event()
        self._watching = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tasktrail-watch", daemon=True)

    def start(self, *, timeout: float = 10.0) -> bool:
        """Start watching; returns once the first look was taken (True) or after ``timeout``
        seconds (False, and the watcher keeps trying; 0: at once)."""
        self._thread.start()
        return self._watching.wait(timeout)

    def close(self, *, timeout: float | None = 1.0) -> None:
        """Stop watching and close the connection; wait up to ``timeout`` seconds for the
        thread to end (0: do not wait; it ends within one interval on its own)."""
        self._closed.set()
        if (listener := self._listener) is not None:
            listener.interrupt()
        if self._thread.is_alive() and timeout != 0:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            run_reconnecting(
                self._closed,
                self._watch,
                lost="lost the SQLite watch connection",
                on_lost=self._watching.clear,
            )
        finally:
            if self._listener is not None:
                self._listener.close()

    def _watch(self) -> None:
        if self._bell is not None and self._listener is None:
            self._listener = self._bell.listen()
        with contextlib.closing(self._connect()) as conn:
            seen = _data_version(conn)
            self._watching.set()
            self._on_commit()
            while not self._pause():
                if (version := _data_version(conn)) != seen:
                    seen = version
                    self._on_commit()

    def _pause(self) -> bool:
        """Wait one interval, or less if the bell rings; True once closed."""
        if self._listener is None:
            return self._closed.wait(self._interval)
        self._listener.wait(self._interval)
        return self._closed.is_set()


def _data_version(conn: Any) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def can_watch(engine: Engine) -> bool:
    """Whether ``engine`` is on a SQLite file that other connections can write to (not an
    in-memory database, which only its own connection sees)."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return False
    database = url.database or ""
    return database not in ("", ":memory:") and url.query.get("mode") != "memory"


def bell_of(engine: Engine) -> Bell | None:
    """The bell of ``engine``'s SQLite file; None when it is not one (or has none)."""
    return bell_for(engine.url.database or "") if can_watch(engine) else None


def watch_commits(
    engine: Engine, on_commit: Callable[[], None], *, wait: bool = True
) -> CommitWatcher | None:
    """A started watcher of commits to ``engine``'s SQLite file, or None when the database
    is not a SQLite file. With ``wait``, it has taken its first look when this returns
    (unless that took more than 10 s); without, it returns at once (for an event loop)."""
    if not can_watch(engine):
        return None
    watcher = CommitWatcher(lambda: detached_connection(engine), on_commit, bell=bell_of(engine))
    if not watcher.start(timeout=10.0 if wait else 0.0) and wait:
        logger.warning("the SQLite commit watcher is not in place yet; relying on polling")
    return watcher
