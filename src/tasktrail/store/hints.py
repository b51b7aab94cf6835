"""Telling the event feed's listeners, across processes, that events were committed.

A ``pg_notify`` inside the writing transaction would do it, but PostgreSQL serialises the
commits of every transaction that notified (they queue on one lock through their WAL
flush), and it wakes every listening backend of the database, each for a transaction of
its own, once per notification. On the worker's hot path that was ten extra transactions
per task. The listeners need no payload, only a hint to read the events table after their
cursor, so the hint is sent after the commit, from a thread of its own: one NOTIFY in
flight at a time, at most one every 20 ms, and every commit made meanwhile shares the next.

If the process dies between a commit and its hint, listeners still read the events at
their next hint or poll. Hints due are sent before the interpreter exits; the thread stops
when idle, so a ``Store`` needs no closing.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from tasktrail.store.channels import EVENTS_CHANNEL

logger = logging.getLogger("tasktrail.hints")
_IDLE_SECONDS = 10.0
#: Each hint wakes every listening backend of the database for a transaction: under load,
#: at most one per this many seconds (the live feed's latency grows by at most as much).
_GAP_SECONDS = 0.02
_FLUSH_SECONDS = 2.0


class EventHints:
    """Sends ``NOTIFY tasktrail_events`` after commits, coalesced, from a background thread:
    the first commit after a quiet spell is hinted at once, then at most one hint goes out
    per ``gap`` seconds. The thread stops after ``idle`` seconds without commits (and
    starts again at the next).

    ``connect`` opens an autocommit psycopg connection. ``committed`` never blocks on I/O;
    ``flush`` waits for the hints due, and runs for every instance at interpreter exit. A
    hint that cannot be sent is logged and dropped (listeners poll too).
    """

    def __init__(
        self, connect: Callable[[], Any], *, gap: float = _GAP_SECONDS, idle: float = _IDLE_SECONDS
    ) -> None:
        self._connect = connect
        self._gap = gap
        self._idle = idle
        self._due = threading.Event()
        self._changed = threading.Condition()
        self._requested = 0  # commits told of
        self._sent = 0  # of those, how many a sent hint covers
        self._thread: threading.Thread | None = None
        _live.add(self)

    def committed(self) -> None:
        """Events were committed: have a hint sent soon."""
        with self._changed:
            self._requested += 1
            self._due.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tasktrail-hints", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float = _FLUSH_SECONDS) -> bool:
        """Wait until a hint was sent after every commit told of so far (False if
        ``timeout`` seconds passed first)."""
        with self._changed:
            wanted = self._requested
            return self._changed.wait_for(lambda: self._sent >= wanted, timeout)

    def _run(self) -> None:
        conn = None
        try:
            while self._due.wait(self._idle) or not self._stopped():
                self._due.clear()
                with self._changed:
                    covered = self._requested
                try:
                    if conn is None:
                        conn = self._connect()
                        # A lost hint costs a listener a poll, not data: no need to wait
                        # for this transaction's WAL flush.
                        conn.execute("SET synchronous_commit = off")
                    conn.execute("SELECT pg_notify(%s, '')", (EVENTS_CHANNEL,))
                except Exception as error:
                    # Listeners fall back on polling; the next commit tries a new connection.
                    logger.warning("could not send an event hint: %s", error)
                    _close(conn)
                    conn = None
                with self._changed:
                    self._sent = covered
                    self._changed.notify_all()
                time.sleep(self._gap)  # commits meanwhile share the next hint
        finally:
            _close(conn)

    def _stopped(self) -> bool:
        """After an idle wait: stop, unless a commit came in meanwhile."""
        with self._changed:
            if self._due.is_set():
                return False
            self._thread = None
            return True


_live: weakref.WeakSet[EventHints] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for hints in list(_live):
        hints.flush()


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # pragma: no cover - closing a broken connection
            logger.debug("closing the hint connection failed", exc_info=True)
