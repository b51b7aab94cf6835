"""Hearing, across processes, that tasks were queued: PostgreSQL ``LISTEN``.

The store sends ``pg_notify('tasktrail_queued', <queue>)`` in the same transaction that
queues a task, so a listener hears it once that transaction commits. SQLite has no such
channel (nor do PostgreSQL drivers other than psycopg 3); there ``listen_for_queued``
returns None and workers poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy.engine import Engine

from tasktrail.store.store import QUEUED_CHANNEL

logger = logging.getLogger("tasktrail.listen")
#: How long one wait for notifications lasts; bounds how late ``close`` is noticed.
_WAIT_SECONDS = 1.0
_RECONNECT_SECONDS = 1.0


class QueueListener:
    """A dedicated PostgreSQL connection that calls ``on_queued(queue)`` for each task
    queued (on one of ``queues``, or on any when ``queues`` is None), in its own thread.

    ``connect`` opens the psycopg connection; it is closed when the listener stops.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        on_queued: Callable[[str], None],
        *,
        queues: Collection[str] | None = None,
    ) -> None:
        self._connect = connect
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
        from psycopg import sql

        with self._connect() as conn:
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
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return None

    def connect() -> Any:
        # The engine's own connect arguments, on a connection taken out of its pool.
        pooled = engine.raw_connection()
        conn = pooled.driver_connection
        pooled.detach()
        assert conn is not None
        conn.rollback()
        conn.autocommit = True
        return conn

    listener = QueueListener(connect, on_queued, queues=queues)
    if not listener.start():
        logger.warning("LISTEN is not in place yet; relying on polling until it is")
    return listener
