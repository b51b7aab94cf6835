"""The store: the only code that executes SQL.

Every status change is a compare-and-set plus its event row, in one transaction: on
PostgreSQL the writes of a run (submit, claim, progress, its end) are one statement each
(``run_statements``), on one connection that the run keeps (``kept``), the others
read-lock-compare-and-set. Methods that write accept ``conn``: the caller's open
transaction to join (transactional enqueue). Without it, the store opens, commits and
closes its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import groupby
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tasktrail.errors import InvalidTransition, RunSuperseded, TaskNotFound
from tasktrail.records import (
    TASK_FIELDS,
    Beat,
    Claimed,
    EventRecord,
    ItemCounts,
    ItemRecord,
    Link,
    LinkRecord,
    Page,
    TaskRecord,
)
from tasktrail.retries import backoff_delay
from tasktrail.schema import events, items, links, tasks
from tasktrail.states import (
    CANCEL,
    CLAIM,
    COMPLETE,
    DUE,
    LOSE_FAIL,
    LOSE_RETRY,
    ItemStatus,
    Status,
    Transition,
    changes,
    retry_transition,
)
from tasktrail.store import driver
from tasktrail.store import run_statements as pg
from tasktrail.store import statements as q
from tasktrail.store.aggregates import AggregateQueries
from tasktrail.store.channels import EVENTS_CHANNEL, QUEUED_CHANNEL, SCHEDULED_PAYLOAD
from tasktrail.store.engine import begin_writing
from tasktrail.store.hints import EventHints
from tasktrail.store.kept import KeptConnections
from tasktrail.store.listen import can_listen, connector
from tasktrail.store.watch import bell_of

#: ``Connection.info`` key: this transaction wrote at least one event row.
_WROTE_EVENTS = "tasktrail_wrote_events"
#: ``Connection.info`` key, while the store uses a connection of its own (not the caller's).
_OWN = "tasktrail_own_connection"
#: ``Connection.info`` key: the store's own SQLite transaction queued or scheduled a task, so
#: the watchers in other processes are rung once it commits (see ``bell``).
_WAKES_WORKERS = "tasktrail_wakes_workers"
_WAKING = frozenset({Status.QUEUED, Status.SCHEDULED})
#: The message and data of a new task's creation event.
_SUBMITTED = "submitted"
_SUBMIT_DATA = {"transition": "submit"}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _notices(
    status: Status | None,
    task_id: sa.ColumnElement[Any],
    queue: sa.ColumnElement[Any] | None,
    *,
    events: bool,
) -> list[sa.ColumnElement[Any]]:
    """The NOTIFYs (PostgreSQL) sent with an event of ``task_id`` that moved it to
    ``status``: the queue's name when it became queued; the scheduled payload when it
    became scheduled; with ``events``, the events channel (for writes in the caller's
    transaction, which only the database sees commit: see ``hints``)."""
    notices: list[sa.ColumnElement[Any]] = []
    if events:
        notices.append(sa.func.pg_notify(EVENTS_CHANNEL, task_id).label("notified_events"))
    if status is Status.QUEUED and queue is not None:
        notices.append(sa.func.pg_notify(QUEUED_CHANNEL, queue).label("notified_queue"))
    elif status is Status.SCHEDULED:
        notices.append(sa.func.pg_notify(QUEUED_CHANNEL, SCHEDULED_PAYLOAD).label("notified_queue"))
    return notices


@cache
def _notify_for(status: Status | None, *, events: bool = False) -> pg.Notify:
    """``_notices`` for events moving tasks to ``status``, for ``run_statements``' builders
    (one function per arguments: they cache statements by it)."""
    return lambda task_id, queue: _notices(status, task_id, queue, events=events)


#: The parameter of an event's queue, in ``_event_notifying``'s statements.
_EVENT_QUEUE = "event_queue"


@cache
def _event_notifying(
    insert: sa.Executable, status: Status | None, *, with_queue: bool, hint_events: bool
) -> sa.Executable:
    """The event ``insert`` (``q.insert_event``'s statement), returning the ``_notices``
    of an event moving a task to ``status`` (PostgreSQL): built once per arguments, as the
    driver's statements must be (see ``driver``)."""
    assert isinstance(insert, sa.Insert)
    queue = sa.bindparam(_EVENT_QUEUE, type_=sa.String()) if with_queue else None
    notices = _notices(status, events.c.task_id, queue, events=hint_events)
    return insert.returning(*notices) if notices else insert


def _written(conn: Connection, bound: q.Bound) -> Sequence[Mapping[str, Any]]:
    """Run the write ``bound`` on ``conn``: the rows it returned, by column name. Through
    the driver where it may (see ``driver``); for anyone watching, through SQLAlchemy."""
    direct = driver.direct(conn)
    compiled = driver.compiled_for_driver(bound.statement, conn.dialect) if direct else None
    if compiled is not None:
        return driver.execute(conn, compiled, compiled.parameters(bound.params))
    result = conn.execute(bound.statement, bound.params)
    return [dict(row._mapping) for row in result] if result.returns_rows else []


def _stored_links(new: NewTask, now: datetime) -> list[dict[str, Any]]:
    """The link rows of ``new``, submitted at ``now``: the first link to each resource, in
    ``links_of``'s order (what is stored, and returned)."""
    given = _link_rows(new.id, new.links, now, active=new.status.is_active)
    first = {(r["resource_type"], r["resource_id"]): r for r in reversed(given)}
    return [first[resource] for resource in sorted(first)]


def _with_stored_links(task: TaskRecord, link_rows: Sequence[dict[str, Any]]) -> TaskRecord:
    """``task``, just inserted, with ``link_rows`` (``_stored_links``) as its links: what a
    read of them would return, without the read."""
    if not link_rows:
        return task
    return task.evolve(links=tuple(LinkRecord.from_row(row) for row in link_rows))


def _link_rows(
    task_id: str, new_links: Sequence[Link], now: datetime, *, active: bool
) -> list[dict[str, Any]]:
    return [
        {
            "task_id": task_id,
            "resource_type": link.type,
            "resource_id": link.id,
            "role": link.role,
            "created_at": now,
            "active": active,
        }
        for link in new_links
    ]


def _task_row(new: NewTask, now: datetime) -> dict[str, Any]:
    """The ``tasks`` row of ``new``, submitted at ``now``."""
    return {
        "id": new.id,
        "name": new.name,
        "params": new.params,
        "status": new.status.value,
        "progress": 0,
        "attempts": 0,
        "max_attempts": new.max_attempts,
        "backoff": new.backoff,
        "queue": new.queue,
        "priority": new.priority,
        "dedupe_key": new.dedupe_key,
        "description": new.description,
        "run_after": new.run_after,
        "created_at": now,
        "updated_at": now,
        "queued_at": now if new.status is Status.QUEUED else None,
        "version": 1,
    }


@dataclass(frozen=True)
class NewTask:
    """A validated task, ready to insert."""

    id: str
    name: str
    params: dict[str, Any]
    status: Status
    max_attempts: int
    backoff: float
    queue: str
    priority: int
    dedupe_key: str | None
    description: str | None
    run_after: datetime | None
    links: tuple[Link, ...]


class Store(AggregateQueries):
    """Reads and writes tasks, links, items and events on one engine."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.clock = clock
        self._event_listeners: list[Callable[[], None]] = []
        self._hints = EventHints(connector(engine)) if can_listen(engine) else None
        self._bell = bell_of(engine)
        self._kept = KeptConnections(engine) if self.dialect == "postgresql" else None

    def on_events(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` (from the writing thread) after each transaction of this store
        that wrote events has committed; returns a function that unregisters it.

        Transactions joined through ``conn`` are not reported: readers find those by polling
        or PostgreSQL ``NOTIFY``. Listeners must be quick and must not raise.
        """
        self._event_listeners.append(listener)
        return lambda: self._event_listeners.remove(listener)

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def writing(self, conn: Connection | None = None) -> Iterator[Connection]:
        """A connection inside a write transaction: ``conn`` itself, or a new one committed
        on success and rolled back on error."""
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as own, self._owning(own):
            with begin_writing(own):
                yield own
            wrote_events = own.info.pop(_WROTE_EVENTS, False)
            wakes_workers = own.info.pop(_WAKES_WORKERS, False)
        if wakes_workers:
            self.wake_other_processes()
        if wrote_events:
            self._tell_event_listeners()

    @contextmanager
    def keep_connection(self) -> Iterator[None]:
        """Within the block, the calling thread's one-statement reads and writes share one
        connection (PostgreSQL, when the pool can spare one): for a run of a task, which
        makes several in a row. Nothing else changes; elsewhere the block does nothing."""
        if self._kept is None:
            yield
            return
        with self._kept.keeping():
            yield

    @contextmanager
    def _one_statement(self, conn: Connection | None = None) -> Iterator[Connection]:
        """A connection for a write that is one statement (PostgreSQL): ``conn`` itself,
        or one of the store's in autocommit mode (the thread's kept one, else a new one),
        where the statement is its own transaction and costs one round trip (no
        ``BEGIN``, no ``COMMIT``)."""
        if conn is not None:
            yield conn
            return
        with self._autocommit() as own, self._owning(own):
            yield own
            wrote_events = own.info.pop(_WROTE_EVENTS, False)
        if wrote_events:
            self._tell_event_listeners()

    @contextmanager
    def _autocommit(self) -> Iterator[Connection]:
        """The thread's kept connection (see ``keep_connection``), or a new one in
        autocommit mode, closed at the end."""
        kept = None if self._kept is None else self._kept.current()
        if kept is not None:
            yield kept
            return
        with self.engine.connect() as own:
            own.execution_options(isolation_level="AUTOCOMMIT")
            yield own

    @staticmethod
    @contextmanager
    def _owning(conn: Connection) -> Iterator[None]:
        # info outlives the checkout (it belongs to the pooled connection): clear the marks
        # so that a caller who gets this connection later is not taken for the store.
        conn.info.pop(_WROTE_EVENTS, None)
        conn.info.pop(_WAKES_WORKERS, None)
        conn.info[_OWN] = True
        try:
            yield
        finally:
            # A connection lost meanwhile was invalidated, and its info is cleared when it
            # reconnects; reading it now would raise over the error that invalidated it.
            if not conn.invalidated:
                conn.info.pop(_OWN, None)

    def wake_other_processes(self) -> None:
        """Tasks were queued in a transaction of the caller's, which has committed: wake the
        workers of other processes now (on a SQLite file, its bell rings; on PostgreSQL,
        the ``NOTIFY`` written with the tasks did it at that commit)."""
        if self._bell is not None:
            self._bell.ring()

    def _tell_event_listeners(self) -> None:
        if self._hints is not None:
            self._hints.committed()
        for listener in list(self._event_listeners):
            listener()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection inside a read transaction: one snapshot on SQLite; on PostgreSQL,
        what the engine's isolation level gives (a snapshot per statement under READ
        COMMITTED, the default)."""
        with self.engine.connect() as own, own.begin():
            yield own

    @contextmanager
    def _one_read(self) -> Iterator[Connection]:
        """A connection for a read that is one statement on PostgreSQL, run there in
        autocommit: one round trip, no ``BEGIN`` or ``COMMIT`` (a statement is one snapshot
        at every isolation level). On SQLite, a read transaction, in which a read of
        records (``_records``) takes the links in a second statement."""
        if self.dialect != "postgresql":
            with self.reading() as conn:
                yield conn
            return
        with self._autocommit() as own:
            yield own

    def _event(self, conn: Connection, **values: Any) -> None:
        status: Status | None = values.get("to_status")
        queue: str | None = values.pop("queue", None)
        bound = q.insert_event(now=values.pop("now", None) or self.clock(), **values)
        if self.dialect == "postgresql":
            # Wake-ups ride on the INSERT (no extra round trip) and are transactional:
            # listeners hear them only if and when this commits. The events channel is
            # hinted after our own commits instead (see hints); in the caller's
            # transaction we cannot see the commit, so it rides here too.
            notifying = _event_notifying(
                bound.statement, status, with_queue=queue is not None,
                hint_events=not conn.info.get(_OWN),
            )  # fmt: skip
            bound = q.Bound(notifying, {**bound.params, _EVENT_QUEUE: queue})
        elif status in _WAKING and conn.info.get(_OWN):
            conn.info[_WAKES_WORKERS] = True
        self._write(conn, bound)
        conn.info[_WROTE_EVENTS] = True

    def _write(self, conn: Connection, bound: q.Bound) -> Mapping[str, Any] | None:
        """Run the write ``bound`` in ``conn``'s transaction: its first returned row, if
        any, by column name."""
        rows = _written(conn, bound)
        return rows[0] if rows else None

    # -- creating -----------------------------------------------------------------------

    def insert_task(
        self, new: NewTask, *, actor: str | None = None, conn: Connection | None = None
    ) -> TaskRecord:
        """Insert ``new`` with its links and its creation event.

        When ``new.dedupe_key`` is taken, nothing is written and the existing task comes
        back with ``deduplicated=True``.
        """
        if self.dialect == "postgresql":  # one statement, its own transaction
            with self._one_statement(conn) as c:
                return self._insert(c, new, actor=actor, now=self.clock())
        with self.writing(conn) as c:
            return self._insert(c, new, actor=actor, now=self.clock())

    def insert_tasks(
        self, news: Sequence[NewTask], *, actor: str | None = None, conn: Connection | None = None
    ) -> list[TaskRecord]:
        """``insert_task`` of each of ``news``, in one transaction, created at one moment;
        the records in the order of ``news``. A ``dedupe_key`` taken by an earlier task of
        ``news`` deduplicates as one taken before."""
        now = self.clock()
        # Keyed tasks go in one by one, in key order (the first of equal keys first): two
        # batches that share keys then wait for each other in one order, never in a cycle.
        keyed = sorted(
            (i for i, new in enumerate(news) if new.dedupe_key is not None),
            key=lambda i: news[i].dedupe_key or "",
        )
        unkeyed = [i for i, new in enumerate(news) if new.dedupe_key is None]
        records: dict[int, TaskRecord] = {}
        with self.writing(conn) as c:
            for i in keyed:
                records[i] = self._insert(c, news[i], actor=actor, now=now)
            if unkeyed:
                inserted = self._insert_all(c, [news[i] for i in unkeyed], actor=actor, now=now)
                records.update(zip(unkeyed, inserted, strict=True))
        return [records[i] for i in range(len(news))]

    def _insert_all(
        self, c: Connection, news: Sequence[NewTask], *, actor: str | None, now: datetime
    ) -> list[TaskRecord]:
        """``news``, none with a ``dedupe_key``, with their links and creation events: on
        PostgreSQL in one statement, on SQLite in a statement per table, each run once
        with every row (SQLAlchemy sends the tasks in multi-row ``INSERT``s)."""
        rows = [_task_row(new, now) for new in news]
        links_of = [_stored_links(new, now) for new in news]
        link_rows = [link for task_links in links_of for link in task_links]
        if self.dialect == "postgresql":
            bound = pg.insert_tasks(rows, link_rows, now, message=_SUBMITTED,
                                    data=_SUBMIT_DATA, actor=actor)  # fmt: skip
            found = c.execute(bound.statement, bound.params)
            by_id = {row.id: TaskRecord.from_row(row._mapping) for row in found}
            inserted = [by_id[new.id] for new in news]
        else:
            found = c.execute(q.insert_new_tasks(), rows)
            inserted = [TaskRecord.from_row(row._mapping) for row in found]
            if link_rows:
                c.execute(q.insert_new_links(), link_rows)
            created = [
                q.insert_event(task_id=new.id, type="transition", to_status=new.status,
                               progress=0, message=_SUBMITTED, data=_SUBMIT_DATA, actor=actor,
                               now=now)
                for new in news
            ]  # fmt: skip
            c.execute(created[0].statement, [event.params for event in created])
        self._wake_for_new(c, news)
        c.info[_WROTE_EVENTS] = True
        return [
            _with_stored_links(task, task_links)
            for task, task_links in zip(inserted, links_of, strict=True)
        ]

    def _wake_for_new(self, c: Connection, news: Sequence[NewTask]) -> None:
        """What the creation events of ``news`` would each wake, once: on PostgreSQL their
        ``NOTIFY``s, one per status and queue; on SQLite, in the store's own transaction,
        the file's bell after the commit."""
        own = bool(c.info.get(_OWN))
        if self.dialect != "postgresql":
            if own and any(new.status in _WAKING for new in news):
                c.info[_WAKES_WORKERS] = True
            return
        for (status, queue), task_id in {(new.status, new.queue): new.id for new in news}.items():
            if notices := _notices(status, sa.literal(task_id), sa.literal(queue), events=not own):
                c.execute(sa.select(*notices))

    def _insert(
        self, c: Connection, new: NewTask, *, actor: str | None, now: datetime
    ) -> TaskRecord:
        row = _task_row(new, now)
        if self.dialect == "postgresql":
            return self._insert_at_once(c, new, row, actor=actor)
        inserted: sa.Row[Any] | None
        if new.dedupe_key is None:
            found = q.insert_new_task(row)
            inserted = c.execute(found.statement, found.params).one()
        else:
            statement = q.insert_ignoring_conflicts(tasks, self.dialect, row, ["dedupe_key"])
            if (inserted := c.execute(statement.returning(*tasks.c)).first()) is None:
                return self._deduplicated(c, new.dedupe_key)
        link_rows = _stored_links(new, now)
        if link_rows:
            c.execute(q.insert_new_links(), link_rows)
        self._event(
            c,
            task_id=new.id,
            type="transition",
            to_status=new.status,
            progress=0,
            message=_SUBMITTED,
            data=_SUBMIT_DATA,
            actor=actor,
            now=now,
            queue=new.queue,
        )
        # The inserted row as stored (RETURNING) and the links as written: no second read.
        return _with_stored_links(TaskRecord.from_row(inserted._mapping), link_rows)

    def _insert_at_once(
        self, c: Connection, new: NewTask, row: dict[str, Any], *, actor: str | None
    ) -> TaskRecord:
        link_rows = _stored_links(new, row["created_at"])
        bound = pg.insert_task(
            row,
            link_rows,
            message=_SUBMITTED,
            data=_SUBMIT_DATA,
            actor=actor,
            notify=_notify_for(new.status, events=not c.info.get(_OWN)),
            dedupe=new.dedupe_key is not None,
        )
        inserted = _written(c, bound)
        if not inserted:
            assert new.dedupe_key is not None
            return self._deduplicated(c, new.dedupe_key)
        c.info[_WROTE_EVENTS] = True
        return _with_stored_links(TaskRecord.from_row(inserted[0]), link_rows)

    def _deduplicated(self, c: Connection, dedupe_key: str) -> TaskRecord:
        """The task that holds ``dedupe_key``, marked as the answer to a duplicate."""
        existing = c.execute(sa.select(tasks).where(tasks.c.dedupe_key == dedupe_key)).one()
        record = self._with_links(c, [TaskRecord.from_row(existing._mapping)])[0]
        return record.evolve(deduplicated=True)

    def add_links(
        self, task_id: str, new_links: Sequence[Link], *, conn: Connection | None = None
    ) -> TaskRecord:
        """Link an existing task to more resources; links it already has are kept as they are."""
        with self.writing(conn) as c:
            # Locked, so that a status change cannot slip between reading and linking.
            current = self._lock(c, task_id)
            self._add_links(c, task_id, new_links, self.clock(), active=current.status.is_active)
            return self._get(c, task_id)

    def _add_links(
        self,
        conn: Connection,
        task_id: str,
        new_links: Sequence[Link],
        now: datetime,
        *,
        active: bool,
    ) -> None:
        rows = _link_rows(task_id, new_links, now, active=active)
        if not rows:
            return
        conn.execute(
            q.insert_ignoring_conflicts(
                links, self.dialect, rows, ["task_id", "resource_type", "resource_id"]
            )
        )

    # -- changing status ----------------------------------------------------------------

    def transition(
        self,
        task_id: str,
        transition: Transition,
        *,
        attempt: int | None = None,
        actor: str | None = None,
        message: str | None = None,
        data: dict[str, Any] | None = None,
        conn: Connection | None = None,
        error: str | None = None,
        result: Any = None,
        run_after: datetime | None = None,
        worker: str | None = None,
    ) -> TaskRecord:
        """Apply ``transition`` if the task's current status allows it.

        ``attempt``, when given, also requires the task to still be on that run: a worker
        finishing a run the reaper already gave away gets ``RunSuperseded``. A refused
        change raises ``InvalidTransition`` naming the current status; nothing is written.
        """
        values = changes(transition, error=error, result=result, run_after=run_after,
                         worker=worker)  # fmt: skip
        if attempt is not None and conn is None:
            ended = self._end_run(
                None, task_id, attempt, transition, values,
                actor=actor, message=message, data=data,
            )  # fmt: skip
            if ended is not None:
                return ended
            # Nothing was written: the locking path below says why.
        with self.writing(conn) as c:
            current = self._lock(c, task_id)
            self._check(current, transition, attempt)
            return self._apply(
                c, current, transition, values, actor=actor, message=message, data=data
            )

    def complete_run(
        self, task_id: str, attempt: int, result: Any, *, actor: str | None = None
    ) -> TaskRecord | None:
        """Complete run ``attempt`` of a task with ``result`` — unless one of the task's
        items failed: then nothing is written and None comes back, for the caller to decide
        how the run ended. ``RunSuperseded`` when the run no longer owns the task."""
        values = changes(COMPLETE, result=result)
        completed = self._end_run(
            None, task_id, attempt, COMPLETE, values, actor=actor, message=None, data=None,
            unless_items_failed=True,
        )  # fmt: skip
        if completed is not None:
            return completed
        with self.writing() as c:
            return self._complete_locked(c, task_id, attempt, values, actor=actor)

    def complete_then_claim(
        self,
        task_id: str,
        attempt: int,
        result: Any,
        *,
        worker: str,
        queues: Collection[str] | None = None,
        names: Collection[str] | None = None,
    ) -> tuple[TaskRecord, TaskRecord | None] | None:
        """Complete run ``attempt`` of a task with ``result`` and, in the same transaction,
        claim the next queued task for ``worker`` (of ``queues`` and ``names``, as
        ``claim`` does): the completed task and the claimed one, or None for it when no
        task was queued. Whenever the run is completed, the queue was looked at.

        As ``complete_run``: None, with nothing written and nothing claimed, when one of
        the task's items failed; ``RunSuperseded`` when the run no longer owns the task.
        """
        completion = changes(COMPLETE, result=result)
        if self.dialect == "postgresql":
            bound = pg.complete_then_claim(
                task_id, attempt, completion, changes(CLAIM, worker=worker), queues, names,
                self.clock(), actor=worker,
            )  # fmt: skip
            if rows := self._rows_at_once(bound):
                found = {r.status: r for r in map(TaskRecord.from_row, rows)}
                return found[Status.COMPLETED], found.get(Status.RUNNING)
            # Nothing was written: complete_run says why (or completes after a race), and
            # the claim follows on its own.
            completed = self.complete_run(task_id, attempt, result, actor=worker)
            if completed is None:
                return None
            return completed, self.claim(worker=worker, queues=queues, names=names)
        with self.writing() as c:
            completed = self._end_run(
                c, task_id, attempt, COMPLETE, completion, actor=worker, message=None,
                data=None, unless_items_failed=True,
            )  # fmt: skip
            if completed is None:  # nothing written: the locking path says why
                completed = self._complete_locked(c, task_id, attempt, completion, actor=worker)
            if completed is None:
                return None
            return completed, self._claim_in(c, worker, queues, names, actor=worker)

    def _complete_locked(
        self,
        conn: Connection,
        task_id: str,
        attempt: int,
        values: dict[str, Any],
        *,
        actor: str | None,
    ) -> TaskRecord | None:
        """Complete run ``attempt`` in ``conn``'s transaction, as ``complete_run``, after a
        locking read that names why a run cannot be completed."""
        current = self._lock(conn, task_id)
        self._check(current, COMPLETE, attempt)
        failed = q.any_item_failed(task_id)
        if conn.execute(failed.statement, failed.params).scalar():
            return None
        return self._apply(conn, current, COMPLETE, values, actor=actor, message=None, data=None)

    def _end_run(
        self,
        conn: Connection | None,
        task_id: str,
        attempt: int,
        transition: Transition,
        values: dict[str, Any],
        *,
        actor: str | None,
        message: str | None,
        data: dict[str, Any] | None,
        unless_items_failed: bool = False,
    ) -> TaskRecord | None:
        """End a run by ``transition`` without a locking read: its guard (the run still
        owns the task; no failed items, if asked) is the ``UPDATE``'s ``WHERE``, followed by
        the links and the event, in ``conn``'s transaction or (None) a transaction of its
        own: on PostgreSQL, one statement in autocommit mode. None, with nothing written,
        when the guard did not hold."""
        if not transition.allows(Status.RUNNING):
            return None
        if conn is None and self.dialect != "postgresql":
            with self.writing() as own:
                return self._end_run(
                    own, task_id, attempt, transition, values, actor=actor, message=message,
                    data=data, unless_items_failed=unless_items_failed,
                )  # fmt: skip
        now = self.clock()
        if conn is None:
            bound = pg.end_run(
                task_id, attempt, transition, values, now, message=message,
                data={"transition": transition.name, **(data or {})}, actor=actor,
                notify=_notify_for(transition.target), unless_items_failed=unless_items_failed,
            )  # fmt: skip
            row = self._write_at_once(bound)
            return None if row is None else TaskRecord.from_row(row)
        end = q.end_of_run(
            task_id, attempt, transition, values, now, unless_items_failed=unless_items_failed
        )
        written = self._write(conn, end)
        if written is None:
            return None
        ended = TaskRecord.from_row(written)
        self._changed(
            conn, ended, Status.RUNNING, transition, message=message, data=data, actor=actor,
            now=now,
        )  # fmt: skip
        return ended

    def _write_at_once(self, bound: q.Bound) -> Mapping[str, Any] | None:
        """Run a one-statement write (PostgreSQL) in autocommit mode: its row, or None when
        its guard did not hold and nothing was written."""
        rows = self._rows_at_once(bound)
        return rows[0] if rows else None

    def _rows_at_once(self, bound: q.Bound) -> Sequence[Mapping[str, Any]]:
        """``_write_at_once`` for a statement returning several rows (none: nothing was
        written)."""
        with self._one_statement() as c:
            rows = _written(c, bound)
            if rows:
                c.info[_WROTE_EVENTS] = True
            return rows

    def _lock(self, conn: Connection, task_id: str) -> TaskRecord:
        lock = q.lock_task(task_id)
        row = conn.execute(lock.statement, lock.params).one_or_none()
        if row is None:
            raise TaskNotFound(task_id)
        return TaskRecord.from_row(row._mapping)

    @staticmethod
    def _check(current: TaskRecord, transition: Transition, attempt: int | None) -> None:
        if attempt is not None and (
            current.status is not Status.RUNNING or current.attempts != attempt
        ):
            raise RunSuperseded(
                f"run {attempt} of task {current.id!r} no longer owns it: the task is "
                f"{current.status} on attempt {current.attempts}"
            )
        if not transition.allows(current.status):
            raise InvalidTransition(current.id, transition.name, current.status.value)

    def _apply(
        self,
        conn: Connection,
        current: TaskRecord,
        transition: Transition,
        values: dict[str, Any],
        *,
        actor: str | None,
        message: str | None,
        data: dict[str, Any] | None,
        now: datetime | None = None,
    ) -> TaskRecord:
        now = now or self.clock()
        cas = q.compare_and_set(
            current.id,
            transition,
            expected=current.status,
            version=current.version,
            changes=values,
            now=now,
        )
        row = conn.execute(cas.statement, cas.params).one_or_none()
        if row is None:  # pragma: no cover - the row lock makes this unreachable
            raise InvalidTransition(current.id, transition.name, current.status.value)
        updated = TaskRecord.from_row(row._mapping)
        self._changed(
            conn, updated, current.status, transition, message=message, data=data, actor=actor,
            now=now,
        )  # fmt: skip
        return updated

    def _changed(
        self,
        conn: Connection,
        updated: TaskRecord,
        from_status: Status,
        transition: Transition,
        *,
        message: str | None,
        data: dict[str, Any] | None,
        actor: str | None,
        now: datetime,
    ) -> None:
        """What goes with a task's status change in its transaction: its links' ``active``
        flag when it crossed between active and not, and its event."""
        if updated.status.is_active != from_status.is_active:
            links_active = q.set_links_active(updated.id, updated.status.is_active)
            self._write(conn, links_active)
        self._transition_event(
            conn, updated, from_status, transition, step=updated.current_step,
            message=message, data=data, actor=actor, now=now,
        )  # fmt: skip

    def _transition_event(
        self,
        conn: Connection,
        updated: TaskRecord,
        from_status: Status,
        transition: Transition,
        *,
        step: str | None,
        message: str | None,
        data: dict[str, Any] | None,
        actor: str | None,
        now: datetime,
    ) -> None:
        """The event of ``transition`` having moved a task from ``from_status`` to
        ``updated``."""
        self._event(
            conn,
            task_id=updated.id,
            type="transition",
            from_status=from_status,
            to_status=updated.status,
            progress=updated.progress,
            step=step,
            message=message,
            data={"transition": transition.name, **(data or {})},
            actor=actor,
            now=now,
            queue=updated.queue,
        )

    def claim(
        self,
        *,
        worker: str,
        queues: Collection[str] | None = None,
        actor: str | None = None,
        names: Collection[str] | None = None,
    ) -> TaskRecord | None:
        """Move the next queued task to running for ``worker``; None when none is queued.
        With ``names``, only a task of one of those names is taken."""
        claimed = self._claim(worker, queues, names, actor=actor, look_ahead=False)
        return None if claimed is None else claimed.task

    def claim_next(
        self,
        *,
        worker: str,
        queues: Collection[str] | None = None,
        actor: str | None = None,
        names: Collection[str] | None = None,
    ) -> Claimed | None:
        """``claim``, also saying whether another task that ``claim`` would take was
        queued when this one was taken. When none was, a worker with a free slot has
        nothing to look for until it hears of a new task."""
        return self._claim(worker, queues, names, actor=actor, look_ahead=True)

    def _claim(
        self,
        worker: str,
        queues: Collection[str] | None,
        names: Collection[str] | None,
        *,
        actor: str | None,
        look_ahead: bool,
    ) -> Claimed | None:
        """``claim_next``; without ``look_ahead``, SQLite does not look for more (and says
        there may be: PostgreSQL's claim looks within its one statement anyway)."""
        now = self.clock()
        if self.dialect == "postgresql":
            bound = pg.claim_next(
                queues, names, changes(CLAIM, worker=worker), now,
                actor=actor or worker, notify=_notify_for(Status.RUNNING),
            )  # fmt: skip
            row = self._write_at_once(bound)
            if row is None:
                return None
            return Claimed(TaskRecord.from_row(row), row[pg.MORE_QUEUED])
        # SQLite: every write transaction takes the one write lock that all workers share,
        # so a claim looks, as a reader without it, whether there is anything to take (and,
        # after taking it, whether there is more).
        peek = q.next_queued(queues, names, self.dialect)
        if not self._any(peek):
            return None
        with self.writing() as c:
            task = self._claim_in(c, worker, queues, names, actor=actor or worker, now=now)
        if task is None:
            return None
        return Claimed(task, more_queued=not look_ahead or self._any(peek))

    def _any(self, bound: q.Bound) -> bool:
        """Whether the read ``bound`` finds a row."""
        with self._one_read() as c:
            return c.execute(bound.statement, bound.params).first() is not None

    def _claim_in(
        self,
        conn: Connection,
        worker: str,
        queues: Collection[str] | None,
        names: Collection[str] | None,
        *,
        actor: str,
        now: datetime | None = None,
    ) -> TaskRecord | None:
        """``claim`` inside the transaction of ``conn`` (SQLite)."""
        now = now or self.clock()
        claim = q.claim_next(queues, names, changes(CLAIM, worker=worker), now, self.dialect)
        row = self._write(conn, claim)
        if row is None:
            return None
        claimed = TaskRecord.from_row(row)
        self._transition_event(
            conn, claimed, Status.QUEUED, CLAIM, step=None,
            message=f"attempt {claimed.attempts} of {claimed.max_attempts}",
            data={"attempt": claimed.attempts}, actor=actor, now=now,
        )  # fmt: skip
        return claimed

    def claim_task(
        self, task_id: str, *, worker: str, external_id: str | None = None
    ) -> TaskRecord | None:
        """Claim this one task for ``worker``: queued → running, or scheduled → queued →
        running when its time has come. None when it is not claimable now (already
        claimed, finished, cancelled, not yet due); ``TaskNotFound`` when it does not exist.

        ``external_id`` records the id the executor knows the run by (Celery's task id).
        """
        with self.writing() as c:
            current = self._lock(c, task_id)
            if (
                current.status is Status.SCHEDULED
                and current.run_after is not None
                and current.run_after <= self.clock()
            ):
                current = self._apply(
                    c, current, DUE, changes(DUE), actor=worker, message="due", data=None
                )
            if current.status is not Status.QUEUED:
                return None
            attempt = current.attempts + 1
            values = changes(CLAIM, worker=worker)
            if external_id is not None:
                values["external_id"] = external_id
            return self._apply(
                c,
                current,
                CLAIM,
                values,
                actor=worker,
                message=f"attempt {attempt} of {current.max_attempts}",
                data={"attempt": attempt},
            )

    def promote_due(
        self, *, limit: int = 100, actor: str | None = None, overdue_by: float = 0.0
    ) -> list[TaskRecord]:
        """Move scheduled tasks whose time has come to queued; with ``overdue_by``, only
        those whose ``run_after`` passed at least that many seconds ago."""
        now = self.clock()
        promoted = []
        with self.writing() as c:
            cutoff = now - timedelta(seconds=overdue_by)
            due = q.due_scheduled(cutoff, limit, self.dialect)
            for task_id, _version in c.execute(due.statement, due.params).all():
                current = self._lock(c, task_id)
                promoted.append(
                    self._apply(
                        c, current, DUE, changes(DUE), actor=actor, message="due", data=None
                    )
                )
        return promoted

    def next_due(self) -> datetime | None:
        """When the earliest scheduled task becomes due; None when none is scheduled."""
        with self._one_read() as c:
            value: datetime | None = c.execute(q.next_run_after(self.dialect)).scalar()
        return value

    # -- liveness -----------------------------------------------------------------------

    def heartbeat(self, worker: str, task_ids: Collection[str]) -> dict[str, Beat]:
        """Mark the listed runs of ``worker`` alive, with one statement.

        Returns a ``Beat`` for each task ``worker`` still runs (with its attempt and any
        cancel request); a task missing from the answer no longer belongs to ``worker``.
        """
        if not task_ids:
            return {}
        with self.writing() as c:
            rows = c.execute(q.heartbeat(worker, task_ids, self.clock())).all()
        return {row.id: Beat(row.id, row.attempts, row.cancel_requested_at) for row in rows}

    def reap_lost(
        self, timeout: float, *, actor: str | None = None, limit: int = 100
    ) -> list[TaskRecord]:
        """Take back running tasks whose heartbeat is older than ``timeout`` seconds.

        A task with attempts left goes to ``scheduled`` (after its backoff), the others to
        ``failed`` with ``error = "worker lost"``. Safe when several reapers run at once:
        each task is reaped by one of them, and a run that beat meanwhile is left alone.
        """
        now = self.clock()
        cutoff = now - timedelta(seconds=timeout)
        reaped: list[TaskRecord] = []
        with self.writing() as c:
            for (task_id,) in c.execute(q.lost_runs(cutoff, limit)).all():
                current = self._lock(c, task_id)
                beat = current.heartbeat_at
                if current.status is not Status.RUNNING or beat is None or beat >= cutoff:
                    continue
                silence = (
                    f"{current.worker} sent no heartbeat for {(now - beat).total_seconds():.1f}s"
                )
                data: dict[str, Any] = {"worker": current.worker, "attempt": current.attempts}
                if current.attempts < current.max_attempts:
                    delay = backoff_delay(current.backoff, current.attempts)
                    values = changes(LOSE_RETRY, run_after=now + timedelta(seconds=delay))
                    transition = LOSE_RETRY
                    message = (
                        f"worker lost: {silence}; attempt {current.attempts + 1} in {delay:.2f}s"
                    )
                    data |= {"retry_in": delay, "next_attempt": current.attempts + 1}
                else:
                    values = changes(LOSE_FAIL, error="worker lost")
                    transition = LOSE_FAIL
                    message = f"worker lost: {silence}; no attempts left"
                # At ``now``: the lose event, and the run_after it announces, at one instant.
                lost = self._apply(
                    c, current, transition, values, actor=actor, message=message, data=data,
                    now=now,
                )  # fmt: skip
                reaped.append(lost)
        return reaped

    def touch_stale_queued(self, older_than: float, *, limit: int = 100) -> list[TaskRecord]:
        """Queued tasks nothing has happened to for ``older_than`` seconds, to dispatch
        again; each is touched so that it comes back at most once per ``older_than``."""
        now = self.clock()
        cutoff = now - timedelta(seconds=older_than)
        with self.writing() as c:
            ids = list(c.execute(q.stale_queued(cutoff, limit)).scalars())
            if not ids:
                return []
            rows = c.execute(
                sa.update(tasks)
                .where(tasks.c.id.in_(ids), tasks.c.status == Status.QUEUED.value)
                .values(updated_at=now)
                .returning(*tasks.c)
            ).all()
        return [TaskRecord.from_row(row._mapping) for row in rows]

    def cancel(
        self,
        task_id: str,
        *,
        reason: str | None = None,
        actor: str | None = None,
        conn: Connection | None = None,
    ) -> TaskRecord:
        """Cancel a waiting task at once; ask a running one to stop.

        A running task keeps running until its worker acknowledges (``cancel_requested_at``
        is set and an event says so). A finished task raises ``InvalidTransition``.
        """
        with self.writing(conn) as c:
            current = self._lock(c, task_id)
            if current.status is Status.RUNNING:
                return self._request_cancel(c, current, reason=reason, actor=actor)
            if not CANCEL.allows(current.status):
                raise InvalidTransition(
                    task_id,
                    "cancel",
                    current.status.value,
                    f"cannot cancel task {task_id!r}: it is already {current.status}",
                )
            return self._apply(
                c, current, CANCEL, changes(CANCEL), actor=actor, message=reason, data=None
            )

    def _request_cancel(
        self, conn: Connection, current: TaskRecord, *, reason: str | None, actor: str | None
    ) -> TaskRecord:
        if current.cancel_requested_at is not None:
            return current
        now = self.clock()
        row = conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == current.id, tasks.c.version == current.version)
            .values(cancel_requested_at=now, updated_at=now, version=tasks.c.version + 1)
            .returning(*tasks.c)
        ).one()
        self._event(
            conn,
            task_id=current.id,
            type="cancel_requested",
            message=reason,
            actor=actor,
            now=now,
        )
        return TaskRecord.from_row(row._mapping)

    def retry(
        self,
        task_id: str,
        *,
        only_failed_items: bool = False,
        force: bool = False,
        actor: str | None = None,
        conn: Connection | None = None,
    ) -> TaskRecord:
        """Queue a finished task again, clearing what its last run left behind.

        Items go back to pending: all of them, or with ``only_failed_items`` all but the
        completed ones. ``force`` also allows retrying a completed task.
        """
        transition = retry_transition(force=force)
        with self.writing(conn) as c:
            current = self._lock(c, task_id)
            if not transition.allows(current.status):
                allowed = ", ".join(sorted(s.value for s in transition.sources))
                raise InvalidTransition(
                    task_id,
                    "retry",
                    current.status.value,
                    f"cannot retry task {task_id!r}: it is {current.status}; only "
                    f"{allowed} tasks can be retried"
                    + ("" if force else " (pass force to rerun a completed task)"),
                )
            reset = c.execute(
                q.reset_items(task_id, only_failed=only_failed_items, now=self.clock())
            ).rowcount
            return self._apply(
                c,
                current,
                transition,
                changes(transition),
                actor=actor,
                message="retry" + (" of failed items" if only_failed_items else ""),
                data={"only_failed_items": only_failed_items, "items_reset": reset},
            )

    # -- while running ------------------------------------------------------------------

    def record_progress(
        self,
        task_id: str,
        attempt: int,
        progress: float,
        step: str | None,
        *,
        actor: str | None = None,
    ) -> bool:
        """Store a running task's progress; returns whether its cancellation was requested.

        Raises ``RunSuperseded`` when run ``attempt`` no longer owns the task.
        """
        now = self.clock()
        if self.dialect == "postgresql":  # one statement instead of three
            bound = pg.record_progress(task_id, attempt, progress, step, now, actor=actor)
            if (row := self._write_at_once(bound)) is None:
                with self.reading() as c:
                    raise self._superseded(c, task_id, attempt)
            return row["cancel_requested_at"] is not None
        progress_update = q.record_progress(task_id, attempt, progress, step, now)
        with self.writing() as c:
            written = self._write(c, progress_update)
            if written is None:
                raise self._superseded(c, task_id, attempt)
            self._event(
                c,
                task_id=task_id,
                type="progress",
                progress=progress,
                step=step,
                actor=actor,
                now=now,
            )
            return written["cancel_requested_at"] is not None

    def cancel_requested(self, task_id: str, attempt: int) -> bool:
        """Whether a running task was asked to stop; ``RunSuperseded`` if the run is over."""
        with self.reading() as c:
            row = c.execute(q.run_state(task_id)).one_or_none()
            if row is None or row.status != Status.RUNNING.value or row.attempts != attempt:
                raise self._superseded(c, task_id, attempt)
            return row.cancel_requested_at is not None

    def _superseded(self, conn: Connection, task_id: str, attempt: int) -> RunSuperseded:
        row = conn.execute(q.run_state(task_id)).one_or_none()
        state = "gone" if row is None else f"{row.status} on attempt {row.attempts}"
        return RunSuperseded(f"run {attempt} of task {task_id!r} no longer owns it ({state})")

    def add_event(
        self,
        task_id: str,
        type: str,
        *,
        message: str | None = None,
        data: Any = None,
        actor: str | None = None,
    ) -> None:
        """Append a non-transition event (a log line, a discarded result) to a task."""
        with self.writing() as c:
            self._get(c, task_id)
            self._event(c, task_id=task_id, type=type, message=message, data=data, actor=actor)

    def prepare_items(self, task_id: str, keys: Sequence[str]) -> list[ItemRecord]:
        """Record ``keys`` as the task's items (new ones pending) and return those not yet
        completed, in the order given."""
        now = self.clock()
        with self.writing() as c:
            rows = [
                {"task_id": task_id, "key": key, "status": ItemStatus.PENDING.value,
                 "attempts": 0, "updated_at": now}
                for key in keys
            ]  # fmt: skip
            if rows:
                c.execute(q.insert_ignoring_conflicts(items, self.dialect, rows,
                                                      ["task_id", "key"]))  # fmt: skip
            stored = {
                r.key: ItemRecord.from_row(r._mapping)
                for r in c.execute(sa.select(items).where(items.c.task_id == task_id))
            }
        return [stored[key] for key in keys if stored[key].status is not ItemStatus.COMPLETED]

    def set_item(
        self,
        task_id: str,
        key: str,
        status: ItemStatus,
        *,
        attempt: int,
        error: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Change one item's status for run ``attempt``; ``RunSuperseded`` if it is over."""
        now = self.clock()
        with self.writing() as c:
            updated = c.execute(q.set_item_status(task_id, key, status, error, attempt, now))
            if updated.rowcount == 0:
                raise self._superseded(c, task_id, attempt)
            self._event(
                c,
                task_id=task_id,
                type="item",
                message=error,
                data={"key": key, "status": status.value},
                actor=actor,
                now=now,
            )

    # -- reading ------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord:
        """The task with its links; ``TaskNotFound`` if there is none."""
        with self._one_read() as c:
            return self._get(c, task_id)

    def _get(self, conn: Connection, task_id: str) -> TaskRecord:
        found = q.get_task(task_id, self.dialect)
        records = self._records(conn, conn.execute(found.statement, found.params).all())
        if not records:
            raise TaskNotFound(task_id)
        return records[0]

    def _records(
        self, conn: Connection, rows: Sequence[sa.Row[Any]], *, with_role: bool = False
    ) -> list[TaskRecord]:
        """The tasks of ``rows`` (columns in ``TASK_FIELDS`` order, then ``link_role`` when
        ``with_role``, then what ``q.with_links`` adds), in their order, each with its
        links: from the rows on PostgreSQL, from one more query for them all on SQLite."""
        # Columns by position: a row's lookup by name cost a third of what building a link
        # does, twice per task.
        if self.dialect == "postgresql":
            links_by_task = {row[0]: _links_from_json(row[0], row[-1]) for row in rows}
        else:
            links_by_task = self._links_by_task(conn, [row[0] for row in rows])
        role_at = len(TASK_FIELDS)
        return [
            TaskRecord.from_values(
                row,
                links=links_by_task.get(row[0], ()),
                role=row[role_at] if with_role else None,
            )
            for row in rows
        ]

    def _with_links(self, conn: Connection, records: list[TaskRecord]) -> list[TaskRecord]:
        links_by_task = self._links_by_task(conn, [r.id for r in records])
        return [r.evolve(links=links_by_task.get(r.id, ())) for r in records]

    def _links_by_task(
        self, conn: Connection, task_ids: list[str]
    ) -> dict[str, tuple[LinkRecord, ...]]:
        """The links of the tasks ``task_ids``, by task id (none for a task without any)."""
        if not task_ids:
            return {}
        found = q.links_of(task_ids, self.dialect)
        rows = conn.execute(found.statement, found.params).all()
        return {
            task_id: tuple(LinkRecord.from_values(row) for row in links_of_task)
            for task_id, links_of_task in groupby(rows, key=itemgetter(0))
        }

    def list_tasks(
        self,
        *,
        statuses: Collection[Status] | None = None,
        name: str | None = None,
        queue: str | None = None,
        resource: tuple[str, str] | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """One page of tasks, newest first; ``cursor`` is the previous page's ``next_cursor``."""
        page = q.list_tasks(statuses=statuses, name=name, queue=queue, resource=resource,
                            before_id=cursor, limit=limit + 1, dialect=self.dialect)  # fmt: skip
        with self._one_read() as c:
            rows = c.execute(page.statement, page.params).all()
            records = self._records(c, rows[:limit])
        has_more = len(rows) > limit
        return Page(items=tuple(records), next_cursor=records[-1].id if has_more else None)

    def tasks_for(
        self,
        resource_type: str,
        resource_id: str,
        *,
        active: bool | None = None,
        limit: int | None = None,
        before_id: str | None = None,
    ) -> list[TaskRecord]:
        """The tasks linked to the resource, newest first, each with its link's role: all
        of them, or the newest ``limit``; only those older than ``before_id`` if given."""
        linked = q.tasks_for(resource_type, resource_id, active, limit, before_id,
                             dialect=self.dialect)  # fmt: skip
        with self._one_read() as c:
            rows = c.execute(linked.statement, linked.params).all()
            return self._records(c, rows, with_role=True)

    def has_active_task(self, resource_type: str, resource_id: str) -> bool:
        """Whether an active (queued, scheduled or running) task is linked to the resource:
        ``bool(tasks_for(..., active=True))`` without reading the tasks."""
        found = q.has_active_task(resource_type, resource_id)
        with self._one_read() as c:
            return bool(c.execute(found.statement, found.params).scalar())

    def events(
        self,
        *,
        task_id: str | None = None,
        resource: tuple[str, str] | None = None,
        after: int = 0,
        limit: int = 1000,
        until: int | None = None,
    ) -> list[EventRecord]:
        """Events after the cursor ``after`` (and up to ``until`` included), oldest first."""
        with self._one_read() as c:
            found = q.list_events(
                task_id=task_id, resource=resource, after=after, limit=limit, until=until
            )
            rows = c.execute(found.statement, found.params).all()
        return [EventRecord.from_row(r._mapping) for r in rows]

    def event_ids(self, *, after: int, limit: int = 10_000) -> list[int]:
        """The ids of committed events after ``after``, ascending (gaps show ids that were
        rolled back or whose transaction has not committed yet)."""
        with self._one_read() as c:
            found = q.event_ids(after, limit)
            return list(c.execute(found.statement, found.params).scalars())

    def last_event_id(self) -> int:
        """The highest committed event id, 0 when there is none."""
        with self._one_read() as c:
            return int(c.execute(q.last_event_id()).scalar_one())

    def items(self, task_id: str) -> list[ItemRecord]:
        """A task's items, by key."""
        with self._one_read() as c:
            rows = c.execute(
                sa.select(items).where(items.c.task_id == task_id).order_by(items.c.key)
            ).all()
        return [ItemRecord.from_row(r._mapping) for r in rows]

    def item_counts(self, task_id: str) -> ItemCounts:
        """How many of a task's items are in each status."""
        with self._one_read() as c:
            found = q.item_counts(task_id)
            counts: dict[str, int] = dict(c.execute(found.statement, found.params).tuples().all())
        return ItemCounts(
            total=sum(counts.values()),
            **{s.value: counts.get(s.value, 0) for s in ItemStatus},
        )

    def failed_item_keys(self, task_id: str, limit: int = 5) -> list[str]:
        """The first few failed items' keys, for an error message."""
        with self._one_read() as c:
            found = q.failed_item_keys(task_id, limit)
            return list(c.execute(found.statement, found.params).scalars())


def _links_from_json(task_id: str, values: list[list[Any]] | None) -> tuple[LinkRecord, ...]:
    """The links of task ``task_id`` from ``q.with_links``'s JSON array (None: no links)."""
    return tuple(
        LinkRecord.from_values(
            (
                task_id,
                resource_type,
                resource_id,
                role,
                datetime.fromisoformat(created_at).astimezone(UTC),
            )
        )
        for resource_type, resource_id, role, created_at in values or ()
    )
