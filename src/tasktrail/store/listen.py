"""Hearing, across processes, that tasks were queued or events committed.

PostgreSQL: ``LISTEN``. The store sends ``pg_notify('tasktrail_queued', <queue>)`` in the
same transaction that queues a task (with an empty payload when a task becomes scheduled),
so a listener hears it once that transaction commits; and ``tasktrail_events`` once events
have been committed (see ``hints``; ``listen_for_events`` serves the live event feed).

A SQLite file has no channels, but a ``CommitWatcher`` (``watch``) hears every commit to it,
which each listener takes as "look again". Only where neither applies (an in-memory SQLite
database, a PostgreSQL driver other than psycopg 3) do these functions return None, and
the caller must poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from tasktrail.store.channels import EVENTS_CHANNEL, QUEUED_CHANNEL, SCHEDULED_PAYLOAD
from tasktrail.store.engine import detached_connection
from tasktrail.store.reconnect import run_reconnecting
from tasktrail.store.watch import watch_commits

logger = logging.getLogger("tasktrail.listen")
#: How long one wait for notifications lasts; bounds how late ``close`` is noticed.
_WAIT_SECONDS = 1.0


class Listening(Protocol):
    """A started listener of either kind; ``close`` stops it and releases its connection
    (``timeout``: how long to wait for its thread; 0, not at all)."""

    def close(self, *, timeout: float | None = ...) -> None: ...


class QueueListener:
    """A dedicated PostgreSQL connection that calls ``on_queued(queue)`` for each task
    queued (on one of ``queues``, or on any when ``queues`` is None), in its own thread.

    ``on_queued("")`` (whatever ``queues``) means "look again, at when scheduled tasks fall
    due too": it comes once after each (re)connect and whenever a task becomes scheduled.

    ``connect`` opens the psycopg connection; it is closed when the listener stops. The
    thread runs within ``around()`` (what ``on_queued`` needs for the thread's lifetime).
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        on_queued: Callable[[str], None],
        *,
        queues: Collection[str] | None = None,
        around: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self._connect = connect
        self._on_queued = on_queued
        self._queues = frozenset(queues) if queues else None
        self._around = around
        self._closed = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tasktrail-listen", daemon=True)

    def start(self, *, timeout: float = 10.0) -> bool:
        """Start listening; returns once ``LISTEN`` is in place (True) or after ``timeout``
        seconds (False, and the listener keeps trying to connect)."""
        self._thread.start()
        return self._listening.wait(timeout)

    def close(self, *, timeout: float | None = 2 * _WAIT_SECONDS) -> None:
        """Stop listening and close the connection."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        with self._around():
            run_reconnecting(
                self._closed,
                self._listen,
                lost="lost the LISTEN connection",
                on_lost=self._listening.clear,
            )

    def _listen(self) -> None:
        from psycopg import sql

        with self._connect() as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(QUEUED_CHANNEL)))
            self._listening.set()
            # Whatever was queued or scheduled while we were not listening: look once.
            self._on_queued(SCHEDULED_PAYLOAD)
            while not self._closed.is_set():
                for notify in conn.notifies(timeout=_WAIT_SECONDS):
                    payload = notify.payload
                    if self._queues is None or payload in self._queues or not payload:
                        self._on_queued(payload)


def can_listen(engine: Engine) -> bool:
    """Whether ``engine``'s database and driver can ``LISTEN`` (PostgreSQL with psycopg 3)."""
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


def connector(engine: Engine) -> Callable[[], Any]:
    """Opens an autocommit psycopg connection with ``engine``'s own connect arguments."""

    def connect() -> Any:
        conn = detached_connection(engine)
        conn.rollback()
        conn.autocommit = True
        return conn

    return connect


def listen_for_queued(
    engine: Engine,
    on_queued: Callable[[str], None],
    *,
    queues: Collection[str] | None = None,
    around: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Listening | None:
    """A started listener calling ``on_queued(queue)`` for tasks queued on ``engine``'s
    database, and ``on_queued("")`` to say "look again, at when scheduled tasks fall due
    too" (on a SQLite file, after every commit); None when the database can do neither,
    in which case the caller must poll. On PostgreSQL its thread calls ``on_queued``
    within ``around()``."""
    if not can_listen(engine):
        return watch_commits(engine, lambda: on_queued(SCHEDULED_PAYLOAD))
    listener = QueueListener(connector(engine), on_queued, queues=queues, around=around)
    if not listener.start():
        logger.warning("LISTEN is not in place yet; relying on polling until it is")
    return listener


#: The event feed's listener waits shorter, so that it stops promptly.
_EVENTS_WAIT_SECONDS = 0.5


class NotificationListener:
    """Calls ``callback()`` (in its own thread) for every notification on ``channel``, and
    once after each (re)connect, since notifications sent while disconnected are lost."""

    def __init__(
        self,
        connect: Callable[[], Any],
        callback: Callable[[], None],
        *,
        channel: str = EVENTS_CHANNEL,
    ) -> None:
        self._connect = connect
        self._callback = callback
        self._channel = channel
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tasktrail-feed", daemon=True)

    def start(self) -> None:
        """Start listening in a background thread."""
        self._thread.start()

    def close(self, *, timeout: float | None = 5.0) -> None:
        """Stop listening and close the connection; wait up to ``timeout`` seconds for the
        thread to end (0: do not wait; it ends within a second on its own)."""
        self._stopped.set()
        if self._thread.is_alive() and timeout != 0:
            self._thread.join(timeout)

    def _run(self) -> None:
        run_reconnecting(self._stopped, self._listen, lost="lost the feed's LISTEN connection")

    def _listen(self) -> None:
        from psycopg import sql

        with self._connect() as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self._callback()
            while not self._stopped.is_set():
                for _ in conn.notifies(timeout=_EVENTS_WAIT_SECONDS):
                    self._callback()
                    if self._stopped.is_set():
                        break


def listen_for_events(engine: Engine, callback: Callable[[], None]) -> Listening | None:
    """A started listener calling ``callback()`` whenever events commit on ``engine``'s
    database (on a SQLite file, whenever anything commits), or None when it can hear
    neither (the caller must poll)."""
    if not can_listen(engine):
        return watch_commits(engine, callback, wait=False)  # called on the feed's event loop
    listener = NotificationListener(connector(engine), callback)
    listener.start()
    return listener
