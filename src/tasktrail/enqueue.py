"""Transactional enqueue: tasks submitted inside the caller's transaction reach the
executor only after that transaction's COMMIT has succeeded.

The listeners follow only the ``Connection`` that deferred a task: they are registered on
it at its first deferred task (``defer``), and go with it. Listeners on the engine would
be paid for by every connection of it — SQLAlchemy dispatches the events of every
statement of a connection whose engine has any — and most of those are the store's own
writes, which defer nothing: a fifth of a worker's CPU per task. What is waiting lives in
the pooled connection's ``info`` and is emptied at the end of every transaction, so
nothing carries over from one checkout to the next:

* ``savepoint`` / ``release_savepoint`` / ``rollback_savepoint``: tasks submitted since a
  savepoint that is rolled back are dropped.
* ``rollback``: everything not committed is dropped.
* ``commit``: SQLAlchemy fires it just *before* the DBAPI COMMIT, so the tasks are only
  marked committed here; ``handle_error`` drops them if the COMMIT itself fails.
* The committed tasks are dispatched at the first moment the COMMIT is known to have
  succeeded: ``after_commit`` of a ``Session``, else the next ``begin`` on the connection,
  else its return to the pool (``checkin``, a pool event, registered once per engine: the
  end of ``with engine.begin()``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from tasktrail.records import TaskRecord

Dispatch = Callable[[Sequence[TaskRecord]], None]
_KEY = "tasktrail_enqueue"
_SESSION_KEY = "tasktrail_enqueue_connections"
#: Two threads deferring on one engine for the first time register its listener once.
_registering = threading.Lock()


@dataclass
class _Waiting:
    """Tasks of one pooled connection's transaction, not yet handed to their executor."""

    open: list[tuple[Dispatch, TaskRecord]] = field(default_factory=list)
    #: For each open savepoint, innermost last: how many ``open`` tasks came before it.
    savepoints: list[int] = field(default_factory=list)
    committed: list[tuple[Dispatch, TaskRecord]] = field(default_factory=list)


def defer(conn: Connection, dispatch: Dispatch, records: Sequence[TaskRecord]) -> None:
    """Hand ``records`` to ``dispatch`` once ``conn``'s current transaction has committed;
    never if it (or the savepoint they were written in) rolls back."""
    _follow(conn)
    _waiting(conn.info).open.extend((dispatch, record) for record in records)


def _follow(conn: Connection) -> None:
    """Register the listeners on ``conn``, and those of its engine, if not yet there."""
    with _registering:
        # Neither is a connection's event (SQLAlchemy 2 has handle_error on the dialect):
        # registering them costs the engine's other connections nothing per statement.
        if not event.contains(conn.engine, "checkin", _on_checkin):
            event.listen(conn.engine, "checkin", _on_checkin)
            event.listen(conn.engine, "handle_error", _on_error)
    if event.contains(conn, "commit", _on_commit):
        return
    event.listen(conn, "begin", _on_begin)
    event.listen(conn, "savepoint", _on_savepoint)
    event.listen(conn, "release_savepoint", _on_release_savepoint)
    event.listen(conn, "rollback_savepoint", _on_rollback_savepoint)
    event.listen(conn, "rollback", _on_rollback)
    event.listen(conn, "commit", _on_commit)


def defer_in_session(
    session: Session, conn: Connection, dispatch: Dispatch, records: Sequence[TaskRecord]
) -> None:
    """``defer`` for tasks written through ``session`` on ``conn``: dispatched in the
    session's ``after_commit``, the moment its COMMIT has succeeded."""
    defer(conn, dispatch, records)
    infos: list[dict[Any, Any]] | None = session.info.get(_SESSION_KEY)
    if infos is None:
        infos = session.info[_SESSION_KEY] = []
        event.listen(session, "after_commit", _on_session_commit)
    if not any(info is conn.info for info in infos):
        infos.append(conn.info)


def _info(conn: Connection) -> dict[Any, Any] | None:
    # Touching ``info`` of an invalidated connection would reconnect; its pooled record
    # clears its info on invalidation anyway.
    return None if conn.closed or conn.invalidated else conn.info


def _waiting(info: dict[Any, Any]) -> _Waiting:
    waiting: _Waiting | None = info.get(_KEY)
    if waiting is None:
        waiting = info[_KEY] = _Waiting()
    return waiting


def _held(info: dict[Any, Any] | None) -> _Waiting | None:
    return None if info is None else info.get(_KEY)


def _flush(info: dict[Any, Any] | None) -> None:
    waiting = _held(info)
    if waiting is None or not waiting.committed:
        return
    committed, waiting.committed = waiting.committed, []
    by_executor: dict[Dispatch, list[TaskRecord]] = {}
    for dispatch, record in committed:
        by_executor.setdefault(dispatch, []).append(record)
    for dispatch, records in by_executor.items():
        dispatch(records)


def _on_begin(conn: Connection) -> None:
    info = _info(conn)
    _flush(info)
    waiting = _held(info)
    if waiting is not None:
        waiting.open, waiting.savepoints = [], []


def _on_savepoint(conn: Connection, name: str | None) -> None:
    info = _info(conn)
    if info is None:
        return
    waiting = _waiting(info)
    waiting.savepoints.append(len(waiting.open))


def _on_release_savepoint(conn: Connection, name: str, context: object) -> None:
    waiting = _held(_info(conn))
    if waiting is not None and waiting.savepoints:
        waiting.savepoints.pop()


def _on_rollback_savepoint(conn: Connection, name: str, context: object) -> None:
    waiting = _held(_info(conn))
    if waiting is None:
        return
    # A savepoint opened before this connection deferred its first task is unknown, and
    # still open, so it holds every task deferred since: all of them are dropped.
    start = waiting.savepoints.pop() if waiting.savepoints else 0
    del waiting.open[start:]


def _on_rollback(conn: Connection) -> None:
    waiting = _held(_info(conn))
    if waiting is not None:
        waiting.open, waiting.savepoints = [], []


def _on_commit(conn: Connection) -> None:
    waiting = _held(_info(conn))
    if waiting is not None and waiting.open:
        waiting.committed += waiting.open
        waiting.open, waiting.savepoints = [], []


def _on_error(context: Any) -> None:
    # Between the "commit" event and the dispatch the only statement is the COMMIT: an
    # error there means the tasks marked committed were not.
    conn: Connection | None = context.connection
    waiting = None if conn is None else _held(_info(conn))
    if waiting is not None:
        waiting.committed = []


def _on_checkin(dbapi_connection: object, record: Any) -> None:
    if record is None:
        return
    _flush(record.info)
    waiting = _held(record.info)
    if waiting is not None:
        waiting.open, waiting.savepoints = [], []


def _on_session_commit(session: Session) -> None:
    infos: list[dict[Any, Any]] = session.info.get(_SESSION_KEY) or []
    session.info[_SESSION_KEY] = []
    for info in infos:
        _flush(info)
