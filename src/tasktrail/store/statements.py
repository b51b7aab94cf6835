"""Pure functions that build SQLAlchemy statements. Nothing here executes anything.

Dialect differences live here too: ``dialect`` is ``"postgresql"`` or ``"sqlite"``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from tasktrail.records import LINK_FIELDS, TASK_FIELDS
from tasktrail.schema import CLAIM_INDEX, DUE_INDEX, UTCDateTime, events, items, links, tasks
from tasktrail.states import INCREMENT, TERMINAL, ItemStatus, Status, Transition
from tasktrail.states import NOW as NOW_MARKER


@dataclass(frozen=True)
class Bound:
    """A statement built once and the parameters of one execution of it.

    The hot statements are cached per shape: SQLAlchemy then compiles each once and
    computes its cache key once, instead of rebuilding it on every call (which cost more
    CPU than the database spent running it), and its text never changes, so psycopg
    prepares it on the server after a few runs.
    """

    statement: sa.Executable
    params: dict[str, Any]


# Parameters are prefixed: SQLAlchemy makes a parameter named like a column of a table that
# a statement UPDATEs (links.task_id, tasks.progress) a SET clause of that UPDATE.
NOW = sa.bindparam("arg_now", type_=UTCDateTime())
TASK_ID = sa.bindparam("arg_task_id", type_=sa.String())
ATTEMPT = sa.bindparam("arg_attempt", type_=sa.Integer())
PROGRESS = sa.bindparam("arg_progress", type_=sa.Float())
STEP = sa.bindparam("arg_step", type_=sa.String())
#: The columns of a task row, in ``TASK_FIELDS`` order (as ``TaskRecord.from_values``
#: takes them).
TASK_COLUMNS = tuple(tasks.c[name] for name in TASK_FIELDS)
#: The tasks table as a status move (``moving_to``) updates it. A short alias, because a
#: move names every column in its ``RETURNING``: psycopg caches its parse of a statement's
#: text only up to 4,096 characters, and ``complete_then_claim`` (two moves) went past that
#: with the table's full name, which cost 170 µs of parsing on each call.
MOVED = cast(sa.Alias, tasks.alias("t"))  # an Alias, typed as the wider NamedFromClause
#: "The link's task is active", written as the partial index of active links is: only then
#: do the databases read that index. PostgreSQL does not see that ``active IS true`` implies
#: ``active``, and SQLite matches an index's WHERE term as written (SQLAlchemy renders a
#: boolean column alone as ``active = 1`` there).
ACTIVE_LINK = sa.text(f"{links.name}.active")
#: Every column of an event row but its id.
EVENT_COLUMNS = ("task_id", "type", "from_status", "to_status", "progress", "step", "message",
                 "data", "actor", "created_at")  # fmt: skip


def constant(value: str | int | bool) -> sa.ColumnElement[Any]:
    """``value`` (a status, a row kind, a count: never user input) written into the
    statement as a constant, not sent as a parameter: the hot statements stay short
    (see ``MOVED``), each run sends fewer parameters, and a prepared statement's generic
    plan still sees the value (and with it which partial index applies)."""
    if isinstance(value, bool):
        return sa.true() if value else sa.false()
    if isinstance(value, int):
        return sa.literal_column(str(value), sa.Integer())
    return sa.literal_column(f"'{value}'", sa.String())


#: How each column is set: ``(column, "now" | "increment" | "null" | "value")``, hashable.
Shape = tuple[tuple[str, str], ...]


#: Columns whose None is stored as JSON ``null``, not as SQL ``NULL``.
_JSON_COLUMNS = frozenset(column.name for column in tasks.c if isinstance(column.type, sa.JSON))


def shape_of(changes: Mapping[str, Any], prefix: str = "set_") -> tuple[Shape, dict[str, Any]]:
    """The shape of a state machine's ``changes`` and the parameters of its values (named
    ``prefix`` + column)."""
    shape: list[tuple[str, str]] = []
    params: dict[str, Any] = {}
    for column, value in sorted(changes.items()):
        if value is NOW_MARKER:
            shape.append((column, "now"))
        elif value is INCREMENT:
            shape.append((column, "increment"))
        elif value is None and column not in _JSON_COLUMNS:  # JSON's None is JSON null
            shape.append((column, "null"))
        else:
            shape.append((column, "value"))
            params[f"{prefix}{column}"] = value
    return tuple(shape), params


def set_clause(shape: Shape, prefix: str = "set_") -> dict[str, Any]:
    """The SET clause of ``shape`` (its values are ``prefix`` + column parameters)."""
    clause: dict[str, Any] = {}
    for column, kind in shape:
        if kind == "now":
            clause[column] = NOW
        elif kind == "increment":
            clause[column] = MOVED.c[column] + constant(1)
        elif kind == "null":
            clause[column] = sa.null()
        else:
            clause[column] = sa.bindparam(f"{prefix}{column}", type_=tasks.c[column].type)
    return clause


def insert_ignoring_conflicts(
    table: sa.Table,
    dialect: str,
    values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[str],
) -> Insert:
    """``INSERT … ON CONFLICT (conflict_columns) DO NOTHING`` on either database."""
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(values)
        return pg.on_conflict_do_nothing(index_elements=list(conflict_columns))
    lite = sqlite.insert(table).values(values)
    return lite.on_conflict_do_nothing(index_elements=list(conflict_columns))


def insert_new_task(row: Mapping[str, Any]) -> Bound:
    """One new task, ``row`` naming its columns, returning the row as stored (SQLite's
    submit; PostgreSQL's writes the task, its links and its event in one statement)."""
    return Bound(_insert_new_task(), dict(row))


@cache
def _insert_new_task() -> Insert:
    # No VALUES clause: SQLAlchemy takes it from the parameters' names, and caches the
    # statement compiled for each set of names.
    return sa.insert(tasks).returning(*tasks.c)


@cache
def insert_new_tasks() -> Insert:
    """New tasks, executed with one row of parameters per task (as ``insert_new_task``'s),
    returning the rows as stored in the order of the parameters. SQLAlchemy sends them in
    multi-row ``INSERT``s ("insertmanyvalues")."""
    return sa.insert(tasks).returning(*tasks.c, sort_by_parameter_order=True)


@cache
def insert_new_links() -> Insert:
    """INSERT of the links of a task just inserted, executed with one row of parameters per
    link, by column name (no link of the task exists yet, and a submission's links name
    distinct resources: nothing can conflict)."""
    return sa.insert(links)


def lock_task(task_id: str) -> Bound:
    """Read one task, locking its row for the rest of the transaction (PostgreSQL)."""
    return Bound(_lock_task(), {"arg_task_id": task_id})


@cache
def _lock_task() -> sa.Select[Any]:
    return sa.select(tasks).where(tasks.c.id == TASK_ID).with_for_update()


def compare_and_set(
    task_id: str,
    transition: Transition,
    *,
    expected: Status,
    version: int,
    changes: Mapping[str, Any],
    now: datetime,
) -> Bound:
    """The guarded status change, setting the state machine's ``changes``: it updates
    nothing unless the row is still as read."""
    assert transition.allows(expected)
    shape, params = shape_of(changes)
    params |= {"arg_task_id": task_id, "arg_version": version, "arg_now": now}
    return Bound(_compare_and_set(transition, expected, shape), params)


@cache
def _compare_and_set(transition: Transition, expected: Status, shape: Shape) -> sa.Update:
    return moving_to(
        sa.update(MOVED).where(
            MOVED.c.id == TASK_ID,
            MOVED.c.status.in_([constant(s.value) for s in transition.sources]),
            MOVED.c.status == constant(expected.value),
            MOVED.c.version == sa.bindparam("arg_version", type_=sa.Integer()),
        ),
        transition.target,
        shape,
    )


def end_of_run(
    task_id: str,
    attempt: int,
    transition: Transition,
    changes: Mapping[str, Any],
    now: datetime,
    *,
    unless_items_failed: bool = False,
) -> Bound:
    """End run ``attempt`` of a task by ``transition`` (from running), setting the state
    machine's ``changes``: it updates nothing unless that run still owns the task and,
    with ``unless_items_failed``, none of the task's items failed."""
    assert transition.allows(Status.RUNNING)
    shape, params = shape_of(changes)
    params |= {"arg_task_id": task_id, "arg_attempt": attempt, "arg_now": now}
    return Bound(end_of_run_statement(transition, shape, unless_items_failed), params)


@cache
def end_of_run_statement(
    transition: Transition, shape: Shape, unless_items_failed: bool
) -> sa.Update:
    """``end_of_run``'s statement (its parameters: ``end_of_run``)."""
    guard = [MOVED.c.id == TASK_ID, MOVED.c.status == constant(Status.RUNNING.value),
             MOVED.c.attempts == ATTEMPT]  # fmt: skip
    if unless_items_failed:
        guard.append(~item_failed())
    return moving_to(sa.update(MOVED).where(*guard), transition.target, shape)


def claim_next(
    queues: Collection[str] | None,
    names: Collection[str] | None,
    changes: Mapping[str, Any],
    now: datetime,
    dialect: str,
) -> Bound:
    """Move the next queued task (highest priority, then oldest; of ``queues`` and
    ``names`` when given) to running, setting the state machine's ``changes``.

    ``FOR UPDATE SKIP LOCKED`` makes concurrent claimers on PostgreSQL pass each other by;
    on SQLite the write lock of ``BEGIN IMMEDIATE`` serialises them.
    """
    shape, params = shape_of(changes)
    params |= claim_filters(queues, names, dialect)
    params["arg_now"] = now
    return Bound(claim_next_statement(bool(queues), names is not None, shape, dialect), params)


def claim_filters(
    queues: Collection[str] | None, names: Collection[str] | None, dialect: str
) -> dict[str, Any]:
    """The parameters of ``claim_next_statement``'s queue and name filters."""
    params: dict[str, Any] = {}
    if queues:
        params["arg_queues"] = _list_value(queues, dialect)
    if names is not None:
        params["arg_names"] = _list_value(names, dialect)
    return params


_CLAIM_COLUMNS = ("id", "status", "queue", "name", "priority")


@cache
def claim_next_statement(
    by_queue: bool, by_name: bool, shape: Shape, dialect: str, prefix: str = "set_"
) -> sa.Update:
    """``claim_next``'s statement (its parameters: ``claim_next``; the values of ``shape``
    named ``prefix`` + column)."""
    candidate = next_queued_statement(by_queue, by_name, dialect).with_for_update(skip_locked=True)
    # No second "status = 'queued'" here: the candidate is locked (PostgreSQL) or the write
    # lock is held (SQLite), so it is still queued; and with it, PostgreSQL finds the row
    # through the claim index, scanning it all, instead of by primary key.
    return moving_to(
        sa.update(MOVED).where(MOVED.c.id == candidate.scalar_subquery()),
        Status.RUNNING,
        shape,
        prefix,
    )


def moving_to(update: sa.Update, target: Status, shape: Shape, prefix: str = "set_") -> sa.Update:
    """``update`` (of ``MOVED``) moving the rows it matches to ``target``: their
    status, ``updated_at``, version and the values of ``shape`` (parameters named ``prefix``
    + column), returning the new rows."""
    return update.values(
        status=constant(target.value),
        updated_at=NOW,
        version=MOVED.c.version + constant(1),
        **set_clause(shape, prefix),
    ).returning(*MOVED.c)


def next_queued(
    queues: Collection[str] | None, names: Collection[str] | None, dialect: str
) -> Bound:
    """The id of the task that ``claim_next`` would claim now (of ``queues`` and ``names``
    when given), if any, read without locking it."""
    params = claim_filters(queues, names, dialect)
    return Bound(next_queued_statement(bool(queues), names is not None, dialect), params)


@cache
def next_queued_statement(by_queue: bool, by_name: bool, dialect: str) -> sa.Select[Any]:
    """``next_queued``'s statement (its parameters: ``claim_filters``)."""
    # 'queued' written out, not a parameter: only then can SQLite and PostgreSQL (in the
    # generic plan of a prepared statement) see that the partial claim index applies.
    queued = constant(Status.QUEUED.value)
    if dialect == "sqlite":
        # Else SQLite takes an index on status and sorts every queued task on each claim.
        source, columns = _sqlite_through(CLAIM_INDEX, _CLAIM_COLUMNS)
    else:
        source = tasks.alias("q")  # short, as ``MOVED``: it is part of complete_then_claim
        columns = {name: source.c[name] for name in _CLAIM_COLUMNS}
    candidate = sa.select(columns["id"]).select_from(source).where(columns["status"] == queued)
    if by_queue:
        candidate = candidate.where(_claim_filter(columns["queue"], "arg_queues", dialect))
    if by_name:
        candidate = candidate.where(_claim_filter(columns["name"], "arg_names", dialect))
    return candidate.order_by(columns["priority"].desc(), columns["id"]).limit(constant(1))


def _claim_filter(column: sa.ColumnElement[Any], name: str, dialect: str) -> sa.ColumnElement[bool]:
    """``_one_of`` for the claim's queue and name filters, which keep most queued tasks (a
    worker runs what is queued for it); on PostgreSQL written so that the planner takes
    them to keep nearly all.

    PostgreSQL takes ``= ANY(array)`` to keep a small share of the rows. On a tasks table
    it has no statistics for (never analyzed: autovacuum off, or not yet run) and with
    the dead versions a drain leaves, it then expects about one queued task to pass and
    sorts every queued task (a bitmap scan) instead of walking the claim index to the
    first: 6 to 8 ms a claim with 4,000 queued instead of 0.1, which halved a drain's
    rate. ``array_position(…) IS NOT NULL`` keeps the same rows, and the planner assumes
    it keeps nearly all of them.
    """
    if dialect != "postgresql":
        return _one_of(column, name, dialect)
    values = sa.bindparam(name, type_=postgresql.ARRAY(sa.String()))
    return sa.func.array_position(values, column).is_not(None)


def _sqlite_through(
    index: str, names: Collection[str]
) -> tuple[Any, dict[str, sa.ColumnElement[Any]]]:
    """The tasks table read through ``index`` on SQLite, and its columns ``names``.

    Without statistics (who runs ``ANALYZE`` on an app's SQLite file?) SQLite prefers an
    index on ``status`` that covers the query to a partial index made for it; SQLAlchemy
    renders no table hints for SQLite, hence the ``INDEXED BY`` written here.
    """
    source = sa.text(f"{tasks.name} INDEXED BY {index}")
    return source, {name: sa.column(name, tasks.c[name].type) for name in names}


def _one_of(column: sa.ColumnElement[Any], name: str, dialect: str) -> sa.ColumnElement[bool]:
    """``column`` is one of the values of the parameter ``name`` (``_list_value`` makes
    it): one parameter on either database, so the statement's text, and on PostgreSQL its
    prepared plan, is the same for any number of values.

    PostgreSQL takes an array, whose length its planner knows (given JSON text, it assumed
    100 values and, on a table of 30,000 links, read them all). SQLite takes a JSON array,
    which ``json_each`` reads: a list that SQLAlchemy expands into one parameter per value
    is rendered again on every execution, which cost more than SQLite spent running it.
    """
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(sa.String())))
    listed = sa.func.json_each(sa.bindparam(name, type_=sa.String())).table_valued("value")
    return column.in_(sa.select(listed.c.value))


def due_scheduled(now: datetime, limit: int, dialect: str) -> Bound:
    """Scheduled tasks whose ``run_after`` has passed, the earliest first, locked for
    promotion."""
    return Bound(_due_scheduled(dialect), {"arg_now": now, "arg_limit": limit})


@cache
def _due_scheduled(dialect: str) -> sa.Select[Any]:
    source, columns = _scheduled_tasks(("id", "version", "status", "run_after"), dialect)
    return (
        sa.select(columns["id"], columns["version"])
        .select_from(source)
        .where(columns["status"] == constant(Status.SCHEDULED.value))
        .where(columns["run_after"] <= NOW)
        .order_by(columns["run_after"])
        .limit(_param("arg_limit", sa.Integer()))
        .with_for_update(skip_locked=True)
    )


@cache
def next_run_after(dialect: str) -> sa.Select[Any]:
    """When the earliest scheduled task becomes due (the first entry of the partial index
    of due times, however many tasks are scheduled)."""
    source, columns = _scheduled_tasks(("status", "run_after"), dialect)
    return (
        sa.select(sa.func.min(columns["run_after"]))
        .select_from(source)
        .where(columns["status"] == constant(Status.SCHEDULED.value))
    )


def _scheduled_tasks(
    names: Collection[str], dialect: str
) -> tuple[Any, dict[str, sa.ColumnElement[Any]]]:
    """The tasks table and its columns ``names``, for a read of scheduled tasks by due
    time: through the partial ``DUE_INDEX``, which 'scheduled' written out (``constant``)
    lets both databases use, also in a prepared statement's generic plan."""
    if dialect == "sqlite":
        return _sqlite_through(DUE_INDEX, names)
    return tasks, {name: tasks.c[name] for name in names}


def record_progress(
    task_id: str, attempt: int, progress: float, step: str | None, now: datetime
) -> Bound:
    """Store progress for the run ``attempt`` of a task; matches nothing if the run is over."""
    params = {"arg_task_id": task_id, "arg_attempt": attempt, "arg_progress": progress,
              "arg_step": step, "arg_now": now}  # fmt: skip
    return Bound(record_progress_statement(), params)


@cache
def record_progress_statement() -> sa.Update:
    """``record_progress``'s statement (its parameters: ``record_progress``)."""
    return (
        sa.update(tasks)
        .where(
            tasks.c.id == TASK_ID,
            tasks.c.status == constant(Status.RUNNING.value),
            tasks.c.attempts == ATTEMPT,
        )
        .values(
            progress=PROGRESS,
            current_step=STEP,
            updated_at=NOW,
        )
        .returning(tasks.c.id, tasks.c.cancel_requested_at)
    )


def run_state(task_id: str) -> sa.Select[Any]:
    """What a running task function needs to know: whether it still owns the run."""
    return sa.select(tasks.c.status, tasks.c.attempts, tasks.c.cancel_requested_at).where(
        tasks.c.id == task_id
    )


def insert_event(
    *,
    task_id: str,
    type: str,
    now: datetime,
    from_status: Status | None = None,
    to_status: Status | None = None,
    progress: float | None = None,
    step: str | None = None,
    message: str | None = None,
    data: Any = None,
    actor: str | None = None,
) -> Bound:
    """One event row."""
    values = {"task_id": task_id, "type": type,
              "from_status": from_status.value if from_status else None,
              "to_status": to_status.value if to_status else None, "progress": progress,
              "step": step, "message": message, "data": data, "actor": actor,
              "created_at": now}  # fmt: skip
    return Bound(_insert_event(), {f"event_{column}": v for column, v in values.items()})


@cache
def _insert_event() -> Insert:
    values = {name: sa.bindparam(f"event_{name}", type_=events.c[name].type)
              for name in EVENT_COLUMNS}  # fmt: skip
    return sa.insert(events).values(values)


def owned_by_run(task_id: str, attempt: int) -> sa.Exists:
    """True while ``attempt`` is the task's current, running attempt."""
    return sa.exists().where(
        tasks.c.id == task_id,
        tasks.c.status == Status.RUNNING.value,
        tasks.c.attempts == attempt,
    )


def set_item_status(
    task_id: str,
    key: str,
    status: ItemStatus,
    error: str | None,
    attempt: int,
    now: datetime,
) -> sa.Update:
    """Change one item's status on behalf of run ``attempt``; a superseded run changes nothing."""
    values: dict[str, Any] = {"status": status.value, "error": error, "updated_at": now}
    if status is ItemStatus.RUNNING:
        values["attempts"] = items.c.attempts + 1
    return (
        sa.update(items)
        .where(items.c.task_id == task_id, items.c.key == key, owned_by_run(task_id, attempt))
        .values(values)
    )


def reset_items(task_id: str, *, only_failed: bool, now: datetime) -> sa.Update:
    """Put a task's items back to pending before a retry (only the unfinished ones if asked)."""
    statement = sa.update(items).where(items.c.task_id == task_id)
    if only_failed:
        statement = statement.where(items.c.status != ItemStatus.COMPLETED.value)
    return statement.values(status=ItemStatus.PENDING.value, error=None, updated_at=now)


def item_counts(task_id: str) -> Bound:
    """Items of one task counted per status."""
    return Bound(_item_counts(), {"arg_task_id": task_id})


@cache
def _item_counts() -> sa.Select[Any]:
    return (
        sa.select(items.c.status, sa.func.count())
        .where(items.c.task_id == TASK_ID)
        .group_by(items.c.status)
    )


def any_item_failed(task_id: str) -> Bound:
    """Whether any item of one task failed."""
    return Bound(any_item_failed_statement(), {"arg_task_id": task_id})


@cache
def any_item_failed_statement() -> sa.Select[Any]:
    """``any_item_failed``'s statement (its parameter: ``arg_task_id``)."""
    return sa.select(item_failed())


#: The failed items of the task ``arg_task_id``.
_FAILED_ITEMS = (items.c.task_id == TASK_ID, items.c.status == constant(ItemStatus.FAILED.value))


def item_failed() -> sa.Exists:
    """True when an item of the task ``arg_task_id`` failed."""
    return sa.exists().where(*_FAILED_ITEMS)


def failed_item_keys(task_id: str, limit: int) -> Bound:
    """The first failed items of a task, by key."""
    return Bound(_failed_item_keys(), {"arg_task_id": task_id, "arg_limit": limit})


@cache
def _failed_item_keys() -> sa.Select[Any]:
    return (
        sa.select(items.c.key)
        .where(*_FAILED_ITEMS)
        .order_by(items.c.key)
        .limit(_param("arg_limit", sa.Integer()))
    )


def get_task(task_id: str, dialect: str) -> Bound:
    """One task's row: its columns in ``TASK_FIELDS`` order, then its links as
    ``with_links`` adds them."""
    return Bound(_get_task(dialect), {"arg_task_id": task_id})


@cache
def _get_task(dialect: str) -> sa.Select[Any]:
    return with_links(sa.select(*TASK_COLUMNS).where(tasks.c.id == TASK_ID), dialect)


def _in_link_order(table: sa.FromClause) -> tuple[sa.ColumnElement[Any], ...]:
    """The order of a task's links (``table``: the links table or an alias of it)."""
    return table.c.created_at, table.c.resource_type, table.c.resource_id


_OWN_LINK = links.alias("own_link")
#: A task's links as one JSON array of ``[resource_type, resource_id, role, created_at]``,
#: in ``links_of``'s order (``created_at`` in ISO 8601 with its offset).
_LINKS_JSON = (
    sa.select(
        sa.func.json_agg(
            postgresql.aggregate_order_by(
                sa.func.json_build_array(*(_OWN_LINK.c[name] for name in LINK_FIELDS[1:])),
                *_in_link_order(_OWN_LINK),
            )
        )
    )
    .where(_OWN_LINK.c.task_id == tasks.c.id)
    .scalar_subquery()
    .label("links")
)


def with_links(statement: sa.Select[Any], dialect: str) -> sa.Select[Any]:
    """``statement``, which selects rows of the tasks table, with each task's links in a
    last column ``links`` on PostgreSQL (``_LINKS_JSON``): a read of tasks with their
    links is then one statement. SQLite (3.40 has no ordered aggregate) gets
    ``statement`` itself, and reads the links with ``links_of``."""
    return statement.add_columns(_LINKS_JSON) if dialect == "postgresql" else statement


def list_tasks(
    *,
    statuses: Collection[Status] | None,
    name: str | None,
    queue: str | None,
    resource: tuple[str, str] | None,
    before_id: str | None,
    limit: int,
    dialect: str,
) -> Bound:
    """Tasks newest first, filtered (no filter for None or no ``statuses``); ``before_id``
    is the keyset cursor. Columns in ``TASK_FIELDS`` order, then the links as
    ``with_links`` adds them."""
    params: dict[str, Any] = {"arg_limit": limit, "arg_name": name, "arg_queue": queue,
                              "arg_before_id": before_id}  # fmt: skip
    if resource is not None:
        params |= {"arg_resource_type": resource[0], "arg_resource_id": resource[1]}
    statement = _list_tasks(
        tuple(sorted({status.value for status in statuses or ()})),
        by_name=name is not None,
        by_queue=queue is not None,
        by_resource=resource is not None,
        before=before_id is not None,
        dialect=dialect,
    )
    return Bound(statement, params)


@cache
def _list_tasks(
    statuses: tuple[str, ...],
    *,
    by_name: bool,
    by_queue: bool,
    by_resource: bool,
    before: bool,
    dialect: str,
) -> sa.Select[Any]:
    statement = sa.select(*TASK_COLUMNS)
    if by_resource:
        statement = statement.join(links, links.c.task_id == tasks.c.id).where(
            links.c.resource_type == _param("arg_resource_type"),
            links.c.resource_id == _param("arg_resource_id"),
        )
    if statuses:
        # Written out, like the claim's 'queued': the plan of the prepared statement then
        # knows which statuses it reads (their share of the table, their partial indexes).
        statement = statement.where(tasks.c.status.in_([constant(s) for s in statuses]))
    if by_name:
        statement = statement.where(tasks.c.name == _param("arg_name"))
    if by_queue:
        statement = statement.where(tasks.c.queue == _param("arg_queue"))
    if before:
        statement = statement.where(tasks.c.id < _param("arg_before_id"))
    statement = statement.order_by(tasks.c.id.desc()).limit(_param("arg_limit", sa.Integer()))
    return with_links(statement, dialect)


def tasks_for(
    resource_type: str,
    resource_id: str,
    active: bool | None,
    limit: int | None = None,
    before_id: str | None = None,
    *,
    dialect: str,
) -> Bound:
    """Tasks linked to one resource, newest first, with the link's role (``link_role``,
    after the columns in ``TASK_FIELDS`` order) and then their links as ``with_links``
    adds them; at most ``limit``, older than ``before_id`` (the keyset cursor) when given.

    Ordered by the link's ``task_id`` (equal to the task's id) so that the links index
    (resource_type, resource_id, task_id) yields the newest first and a limit stops early.
    Activity is read from the link (kept equal to the task's), so the active tasks of a
    resource come from a partial index of active links, however many finished ones it has.
    """
    params = {"arg_resource_type": resource_type, "arg_resource_id": resource_id,
              "arg_limit": limit, "arg_before_id": before_id}  # fmt: skip
    statement = _tasks_for(
        active, by_limit=limit is not None, before=before_id is not None, dialect=dialect
    )
    return Bound(statement, params)


@cache
def _tasks_for(
    active: bool | None, *, by_limit: bool, before: bool, dialect: str
) -> sa.Select[Any]:
    statement = (
        sa.select(*TASK_COLUMNS, links.c.role.label("link_role"))
        .join(links, links.c.task_id == tasks.c.id)
        .where(
            links.c.resource_type == _param("arg_resource_type"),
            links.c.resource_id == _param("arg_resource_id"),
        )
    )
    if active:
        statement = statement.where(ACTIVE_LINK)
    elif active is not None:
        statement = statement.where(links.c.active.is_(False))
    if before:
        statement = statement.where(links.c.task_id < _param("arg_before_id"))
    statement = statement.order_by(links.c.task_id.desc())
    if by_limit:
        statement = statement.limit(_param("arg_limit", sa.Integer()))
    return with_links(statement, dialect)


def has_active_task(resource_type: str, resource_id: str) -> Bound:
    """Whether an active task is linked to one resource (one row, one boolean)."""
    params = {"arg_resource_type": resource_type, "arg_resource_id": resource_id}
    return Bound(_has_active_task(), params)


@cache
def _has_active_task() -> sa.Select[Any]:
    linked = sa.select(links.c.task_id).where(
        links.c.resource_type == _param("arg_resource_type"),
        links.c.resource_id == _param("arg_resource_id"),
        ACTIVE_LINK,
    )
    return sa.select(sa.exists(linked))


def set_links_active(task_id: str, active: bool) -> Bound:
    """Mark every link of a task active or not: part of a status change that crosses
    between active (queued, scheduled, running) and not."""
    return Bound(_set_links_active(active), {"arg_task_id": task_id})


@cache
def _set_links_active(active: bool) -> sa.Update:
    return sa.update(links).where(links.c.task_id == TASK_ID).values(active=constant(active))


def links_of(task_ids: Collection[str], dialect: str) -> Bound:
    """The links of several tasks, by task: their columns in ``LINK_FIELDS`` order."""
    return Bound(_links_of(dialect), {"arg_task_ids": _list_value(task_ids, dialect)})


@cache
def _links_of(dialect: str) -> sa.Select[Any]:
    return (
        sa.select(*(links.c[name] for name in LINK_FIELDS))
        .where(_one_of(links.c.task_id, "arg_task_ids", dialect))
        .order_by(links.c.task_id, *_in_link_order(links))
    )


def _list_value(values: Collection[str], dialect: str) -> Any:
    """The value of a ``_one_of`` parameter holding ``values``."""
    return list(values) if dialect == "postgresql" else json.dumps(list(values))


def _param(name: str, type_: sa.types.TypeEngine[Any] | None = None) -> sa.BindParameter[Any]:
    """A named parameter of a statement built once (its value: the ``Bound``'s)."""
    return sa.bindparam(name, type_=type_ or sa.String())


def list_events(
    *,
    task_id: str | None,
    resource: tuple[str, str] | None,
    after: int,
    limit: int,
    until: int | None = None,
) -> Bound:
    """Events after the cursor ``after`` (up to ``until`` included), oldest first."""
    params: dict[str, Any] = {"arg_after": after, "arg_limit": limit, "arg_until": until,
                              "arg_task_id": task_id}  # fmt: skip
    if resource is not None:
        params |= {"arg_resource_type": resource[0], "arg_resource_id": resource[1]}
    statement = _list_events(
        by_task=task_id is not None, by_resource=resource is not None, by_until=until is not None
    )
    return Bound(statement, params)


@cache
def _list_events(*, by_task: bool, by_resource: bool, by_until: bool) -> sa.Select[Any]:
    statement = sa.select(events).where(events.c.id > _param("arg_after", sa.BigInteger()))
    if by_until:
        statement = statement.where(events.c.id <= _param("arg_until", sa.BigInteger()))
    if by_task:
        statement = statement.where(events.c.task_id == TASK_ID)
    if by_resource:
        linked = sa.select(links.c.task_id).where(
            links.c.resource_type == _param("arg_resource_type"),
            links.c.resource_id == _param("arg_resource_id"),
        )
        statement = statement.where(events.c.task_id.in_(linked))
    return statement.order_by(events.c.id).limit(_param("arg_limit", sa.Integer()))


def latest_events(task_id: str, limit: int) -> sa.Select[Any]:
    """The newest ``limit`` events of one task, newest first."""
    return (
        sa.select(events)
        .where(events.c.task_id == task_id)
        .order_by(events.c.id.desc())
        .limit(limit)
    )


def count_events_before(task_id: str, before_id: int) -> sa.Select[Any]:
    """How many events of one task precede the event ``before_id``."""
    return sa.select(sa.func.count()).where(events.c.task_id == task_id, events.c.id < before_id)


def last_traceback(task_id: str) -> sa.Select[Any]:
    """The traceback recorded by the task's latest transition that recorded one."""
    text = events.c.data["traceback"].as_string()
    return (
        sa.select(text)
        .where(events.c.task_id == task_id, events.c.type == "transition", text.is_not(None))
        .order_by(events.c.id.desc())
        .limit(1)
    )


def event_ids(after: int, limit: int) -> Bound:
    """Ids of the events after ``after``, ascending."""
    return Bound(_event_ids(), {"arg_after": after, "arg_limit": limit})


@cache
def _event_ids() -> sa.Select[Any]:
    return (
        sa.select(events.c.id)
        .where(events.c.id > _param("arg_after", sa.BigInteger()))
        .order_by(events.c.id)
        .limit(_param("arg_limit", sa.Integer()))
    )


@cache
def last_event_id() -> sa.Select[Any]:
    """The highest event id, 0 when there is none."""
    return sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))


def heartbeat(worker: str, task_ids: Collection[str], now: datetime) -> sa.Update:
    """Refresh ``heartbeat_at`` of the listed tasks that ``worker`` is still running, in one
    statement; returns, per task still owned, its attempt and any cancel request."""
    return (
        sa.update(tasks)
        .where(
            tasks.c.id.in_(list(task_ids)),
            tasks.c.status == Status.RUNNING.value,
            tasks.c.worker == worker,
        )
        .values(heartbeat_at=now)
        .returning(tasks.c.id, tasks.c.attempts, tasks.c.cancel_requested_at)
    )


def lost_runs(cutoff: datetime, limit: int) -> sa.Select[Any]:
    """Running tasks whose last heartbeat is older than ``cutoff``, locked for reaping;
    rows another reaper holds are skipped (PostgreSQL)."""
    return (
        sa.select(tasks.c.id)
        .where(tasks.c.status == Status.RUNNING.value, tasks.c.heartbeat_at < cutoff)
        .order_by(tasks.c.heartbeat_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def stale_queued(cutoff: datetime, limit: int) -> sa.Select[Any]:
    """Queued tasks untouched since ``cutoff``: their message may never have arrived.
    Locked for re-sending; rows another reaper holds are skipped (PostgreSQL)."""
    return (
        sa.select(tasks.c.id)
        .where(tasks.c.status == Status.QUEUED.value, tasks.c.updated_at < cutoff)
        .order_by(tasks.c.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


# -- aggregates for the dashboard and /metrics ------------------------------------------


def _transition_name() -> sa.ColumnElement[str]:
    name: sa.ColumnElement[str] = events.c.data["transition"].as_string()
    return name


def _filtered(
    statement: sa.Select[Any],
    *,
    name: str | None,
    queue: str | None,
    resource: tuple[str, str] | None,
) -> sa.Select[Any]:
    if resource is not None:
        statement = statement.join(links, links.c.task_id == tasks.c.id).where(
            links.c.resource_type == resource[0], links.c.resource_id == resource[1]
        )
    if name is not None:
        statement = statement.where(tasks.c.name == name)
    if queue is not None:
        statement = statement.where(tasks.c.queue == queue)
    return statement


def status_counts(
    *, name: str | None, queue: str | None, resource: tuple[str, str] | None
) -> sa.Select[Any]:
    """``(status, count)`` of the tasks matching the filters (every status)."""
    statement = sa.select(tasks.c.status, sa.func.count()).select_from(tasks)
    statement = _filtered(statement, name=name, queue=queue, resource=resource)
    return statement.group_by(tasks.c.status)


def capped_status_counts(
    *, name: str | None, queue: str | None, resource: tuple[str, str] | None, cap: int
) -> sa.Select[Any]:
    """One row: for each status in ``Status`` order, how many tasks matching the filters
    it has, counted up to ``cap + 1`` only (so each count is a short index scan)."""

    def counted(status: Status) -> sa.ScalarSelect[Any]:
        matching = sa.select(sa.literal(1)).select_from(tasks)
        matching = _filtered(matching, name=name, queue=queue, resource=resource)
        matching = matching.where(tasks.c.status == status.value).limit(cap + 1)
        return sa.select(sa.func.count()).select_from(matching.subquery()).scalar_subquery()

    return sa.select(*(counted(status) for status in Status))


def queue_status_counts() -> sa.Select[Any]:
    """``(queue, status, count)`` over every task."""
    return sa.select(tasks.c.queue, tasks.c.status, sa.func.count()).group_by(
        tasks.c.queue, tasks.c.status
    )


def oldest_queued() -> sa.Select[Any]:
    """``(queue, oldest queued_at)`` of the queues with queued tasks."""
    return (
        sa.select(tasks.c.queue, sa.func.min(tasks.c.queued_at))
        .where(tasks.c.status == Status.QUEUED.value)
        .group_by(tasks.c.queue)
    )


def transition_counts() -> sa.Select[Any]:
    """``(transition name, to_status, count)`` of every transition event ever recorded."""
    name = _transition_name().label("transition")
    return (
        sa.select(name, events.c.to_status, sa.func.count())
        .where(events.c.type == "transition")
        .group_by(name, events.c.to_status)
    )


def lost_recoveries(limit: int) -> sa.Select[Any]:
    """The latest transition events of lost-worker recoveries, newest first."""
    return (
        sa.select(events)
        .where(events.c.type == "transition", _transition_name() == "lose")
        .order_by(events.c.id.desc())
        .limit(limit)
    )


def _seconds_between(
    start: sa.ColumnElement[Any], end: sa.ColumnElement[Any], dialect: str
) -> sa.ColumnElement[float]:
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", end - start), sa.Float)
    # SQLite keeps timestamps as ISO text, which julianday() reads (days, fractional).
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def run_duration_histogram(dialect: str, bounds: Sequence[float]) -> sa.Select[Any]:
    """One row: for each bound, how many finished tasks' last run took at most that many
    seconds; then the count and the sum of all those durations."""
    duration = _seconds_between(tasks.c.started_at, tasks.c.completed_at, dialect)
    columns: list[sa.ColumnElement[Any]] = [
        sa.func.coalesce(sa.func.sum(sa.case((duration <= bound, 1), else_=0)), 0)
        for bound in bounds
    ]
    columns += [sa.func.count(), sa.func.coalesce(sa.func.sum(duration), 0.0)]
    return sa.select(*columns).where(
        tasks.c.status.in_([s.value for s in TERMINAL]),
        tasks.c.started_at.is_not(None),
        tasks.c.completed_at.is_not(None),
    )


def finished_per_bucket(since: datetime, width: timedelta, buckets: int) -> sa.Select[Any]:
    """Per queue with any: the queue, then for each of ``buckets`` consecutive windows of
    ``width`` from ``since``, how many runs ended ``completed`` and how many ended
    ``failed`` or ``partial_failure``."""
    failed = [Status.FAILED.value, Status.PARTIAL_FAILURE.value]
    columns: list[sa.ColumnElement[Any]] = [tasks.c.queue]
    for index in range(buckets):
        start, end = since + width * index, since + width * (index + 1)
        inside = sa.and_(events.c.created_at >= start, events.c.created_at < end)
        completed = sa.and_(inside, events.c.to_status == Status.COMPLETED.value)
        failing = sa.and_(inside, events.c.to_status.in_(failed))
        columns.append(sa.func.coalesce(sa.func.sum(sa.case((completed, 1), else_=0)), 0))
        columns.append(sa.func.coalesce(sa.func.sum(sa.case((failing, 1), else_=0)), 0))
    return (
        sa.select(*columns)
        .select_from(events.join(tasks, tasks.c.id == events.c.task_id))
        .where(
            events.c.type == "transition",
            events.c.created_at >= since,
            events.c.from_status == Status.RUNNING.value,
        )
        .group_by(tasks.c.queue)
    )
