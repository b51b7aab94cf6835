"""Hearing, across processes, what other processes committed: PostgreSQL ``LISTEN``.

The store sends ``pg_notify('tasktrail_queued', <queue>)`` in the same transaction that
queues a task, and ``pg_notify('tasktrail_events', <task id>)`` with every event row, so a
listener hears them once that transaction commits. SQLite has no such channel; there
``listen_for_queued`` returns None and workers poll (and so does the event feed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

from sqlalchemy.engine import URL, Engine

from tasktrail.store.store import EVENTS_CHANNEL, QUEUED_CHANNEL

logger = logging.getLogger("tasktrail.listen")
#: How long one wait for notifications lasts; bounds how late ``close`` is noticed.
_WAIT_SECONDS = 1.0
_RECONNECT_SECONDS = 1.0
#: The event feed's listener waits shorter, so that it stops promptly.
_EVENTS_WAIT_SECONDS = 0.5


class QueueListener:
    """A dedicated PostgreSQL connection that calls ``on_queued(queue)`` for each task
    queued (on one of ``queues``, or on any when ``queues`` is None), in its own thread."""

    def __init__(
        self,
        conninfo: str,
        on_queued: Callable[[str], None],
        *,
        queues: Collection[str] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._on_queued = on_queued
        self._queues = frozenset(queues) if queues else None
        self._closed = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tasktrail-listen", daemon=True)

    def start(self, *, timeout: float = 10.0) -> bool:
        """Start listening; returns once ``LISTEN`` is in place (True) or after ``timeout``
        seconds (False, and the listener keeps trying to connect)."""
        self._thread.start()
        return self._listening.wait(timeout)

    def close(self, *, timeout: float = 2 * _WAIT_SECONDS) -> None:
        """Stop listening and close the connection."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self._listen()
            except Exception:
                logger.warning("lost the LISTEN connection; reconnecting", exc_info=True)
                self._listening.clear()
                self._closed.wait(_RECONNECT_SECONDS)

    def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(QUEUED_CHANNEL)))
            self._listening.set()
            # Whatever was queued while we were not listening: look once.
            self._on_queued("")
            while not self._closed.is_set():
                for notify in conn.notifies(timeout=_WAIT_SECONDS):
                    if self._queues is None or notify.payload in self._queues:
                        self._on_queued(notify.payload)


def listen_for_queued(
    engine: Engine,
    on_queued: Callable[[str], None],
    *,
    queues: Collection[str] | None = None,
) -> QueueListener | None:
    """A started listener for tasks queued on ``engine``'s database, or None when the
    database cannot notify (SQLite), in which case the caller must poll."""
    if engine.dialect.name != "postgresql":
        return None
    listener = QueueListener(conninfo(engine.url), on_queued, queues=queues)
    if not listener.start():
        logger.warning("LISTEN is not in place yet; relying on polling until it is")
    return listener


def conninfo(url: URL) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL ``url``."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class NotificationListener:
    """Calls ``callback()`` (in its own thread) for every notification on ``channel``, and
    once after each (re)connect, since notifications sent while disconnected are lost."""

    def __init__(
        self, url: URL, callback: Callable[[], None], *, channel: str = EVENTS_CHANNEL
    ) -> None:
        self._conninfo = conninfo(url)
        self._callback = callback
        self._channel = channel
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tasktrail-listen", daemon=True)

    def start(self) -> None:
        """Start listening in a background thread."""
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop listening and close the connection; wait up to ``timeout`` seconds for the
        thread to end (0: do not wait; it ends within a second on its own)."""
        self._stopped.set()
        if self._thread.is_alive() and timeout != 0:
            self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self._callback()
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=_EVENTS_WAIT_SECONDS):
                            self._callback()
                            if self._stopped.is_set():
                                break
            except psycopg.Error as exc:
                logger.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._stopped.wait(_RECONNECT_SECONDS)
