"""PostgreSQL: each write of a task's life — submit, claim, progress, end of a run — as one
statement, built once and run with new parameters. Nothing here executes anything.

Why one statement: data-modifying CTEs change the task, its links and write its event (and
the event's NOTIFYs) together, so in autocommit mode the statement is a transaction by
itself. That is one round trip instead of ``BEGIN``, a locking read, two or three writes
and ``COMMIT``, and the compare-and-set lives in the ``UPDATE``'s ``WHERE``, which
PostgreSQL re-checks on the locked row.

Why built once: each builder is cached per shape, so SQLAlchemy compiles it once and its
cache key is computed once, instead of rebuilding a CTE of every column on every call; and
its text never changes, so psycopg prepares it on the server after a few runs.

Each statement returns the task's new row, or no row when its guard did not hold; then
nothing was written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tasktrail.schema import JSONType, events, links, tasks
from tasktrail.states import CLAIM, COMPLETE, Status, Transition
from tasktrail.store.statements import (
    EVENT_COLUMNS,
    NOW,
    PROGRESS,
    STEP,
    Bound,
    Shape,
    claim_filters,
    claim_next_statement,
    constant,
    end_of_run_statement,
    next_queued_statement,
    record_progress_statement,
    shape_of,
)

#: Builds an event's NOTIFY expressions from its task id and the task's queue. Must be the
#: same object for the same notices (statements are cached by it).
Notify = Callable[[sa.ColumnElement[Any], sa.ColumnElement[Any]], list[sa.ColumnElement[Any]]]


_ACTOR = sa.bindparam("arg_actor", type_=sa.String())


def _with_transition_event(
    changed: sa.CTE,
    *,
    from_status: Status | None,
    message: sa.ColumnElement[Any],
    data: sa.ColumnElement[Any],
    notify: Notify,
    name: str = "event",
) -> sa.Select[Any]:
    """The changed task's row, with its ``transition`` event row written (by a CTE named
    ``name``; PostgreSQL runs every data-modifying CTE, read or not) and stamped with the
    change's ``updated_at``."""
    event = sa.select(
        changed.c.id,
        constant("transition"),
        constant(from_status.value) if from_status else sa.null(),
        changed.c.status,
        changed.c.progress,
        changed.c.current_step,
        message,
        data,
        _ACTOR,
        changed.c.updated_at,
    )
    inserted = sa.insert(events).from_select(list(EVENT_COLUMNS), event).cte(name)
    return sa.select(changed, *notify(changed.c.id, changed.c.queue)).add_cte(inserted)


def _with_creation_event(inserted: sa.CTE, notify: Notify) -> sa.Select[Any]:
    """The new tasks' rows, with their first event (``arg_message``, ``arg_data``)."""
    return _with_transition_event(
        inserted,
        from_status=None,
        message=sa.bindparam("arg_message", type_=sa.Text()),
        data=sa.bindparam("arg_data", type_=JSONType),
        notify=notify,
    )


# -- submit -------------------------------------------------------------------------------


def insert_task(
    row: Mapping[str, Any],
    link_rows: Sequence[Mapping[str, Any]],
    *,
    message: str,
    data: dict[str, Any],
    actor: str | None,
    notify: Notify,
    dedupe: bool,
) -> Bound:
    """A new task, its links (``link_rows``, one per resource) and its creation event.
    With ``dedupe``, nothing at all is written (and no row comes back) when the task's
    ``dedupe_key`` is taken."""
    params = {f"new_{column}": value for column, value in row.items()}
    params |= {
        "arg_now": row["created_at"],
        "arg_actor": actor,
        "arg_message": message,
        "arg_data": data,
    }
    params |= {
        "arg_link_types": [link["resource_type"] for link in link_rows],
        "arg_link_ids": [link["resource_id"] for link in link_rows],
        "arg_link_roles": [link["role"] for link in link_rows],
        "arg_link_active": link_rows[0]["active"] if link_rows else False,
    }
    return Bound(_insert_task(tuple(row), notify, dedupe, bool(link_rows)), params)


@cache
def _insert_task(
    columns: tuple[str, ...], notify: Notify, dedupe: bool, with_links: bool
) -> sa.Select[Any]:
    values = {column: sa.bindparam(f"new_{column}", type_=tasks.c[column].type)
              for column in columns}  # fmt: skip
    if dedupe:
        # SQLAlchemy 2.0 compiles PostgreSQL's INSERT … ON CONFLICT anew at every run (it
        # has no cache key), so only a submit with a dedupe_key pays for it.
        on_conflict = postgresql.insert(tasks).values(values)
        new_task: sa.Insert = on_conflict.on_conflict_do_nothing(index_elements=["dedupe_key"])
    else:
        new_task = sa.insert(tasks).values(values)
    inserted = new_task.returning(*tasks.c).cte("inserted_task")
    statement = _with_creation_event(inserted, notify)
    if not with_links:
        return statement
    text_array = postgresql.ARRAY(sa.String())
    given = (
        sa.func.unnest(
            sa.bindparam("arg_link_types", type_=text_array),
            sa.bindparam("arg_link_ids", type_=text_array),
            sa.bindparam("arg_link_roles", type_=text_array),
        )
        .table_valued("resource_type", "resource_id", "role", name="given_links")
        .render_derived()
    )
    linked = (  # a new task has no links yet, and it is given each resource once
        sa.insert(links)
        .from_select(
            ["task_id", "resource_type", "resource_id", "role", "created_at", "active"],
            sa.select(
                inserted.c.id,
                given.c.resource_type,
                given.c.resource_id,
                given.c.role,
                NOW,
                sa.bindparam("arg_link_active", type_=sa.Boolean()),
            ).select_from(inserted.join(given, sa.true())),
        )
        .cte("inserted_links")
    )
    return statement.add_cte(linked)


def insert_tasks(
    rows: Sequence[Mapping[str, Any]],
    link_rows: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    message: str,
    data: dict[str, Any],
    actor: str | None,
) -> Bound:
    """New tasks (``rows``, none with a ``dedupe_key``, all created at ``now``), their
    links (``link_rows``, each naming its task) and their creation events, in one
    statement whatever their number: each column travels as one array, so the statement
    and its parameters are the same for every batch. Returns the tasks' rows, in no
    particular order. Sends no ``NOTIFY``: the caller sends one per queue."""
    params: dict[str, Any] = {
        f"new_{column}": [json.dumps(row[column]) if column == "params" else row[column]
                          for row in rows]
        for column in _BATCH_COLUMNS
    }  # fmt: skip
    params |= {f"link_{column}": [link[column] for link in link_rows] for column in _LINK_COLUMNS}
    params |= {"arg_now": now, "arg_actor": actor, "arg_message": message, "arg_data": data}
    return Bound(_insert_tasks(), params)


#: The columns of ``insert_tasks``' rows that differ from task to task, by their SQL types
#: (``params`` as JSON text, cast to ``jsonb`` in the statement).
_BATCH_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "id": sa.String(), "name": sa.String(), "params": sa.Text(), "status": sa.String(),
    "max_attempts": sa.Integer(), "backoff": sa.Float(), "queue": sa.String(),
    "priority": sa.Integer(), "description": sa.Text(), "run_after": sa.DateTime(timezone=True),
}  # fmt: skip
_LINK_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "task_id": sa.String(), "resource_type": sa.String(), "resource_id": sa.String(),
    "role": sa.String(), "active": sa.Boolean(),
}  # fmt: skip
#: What ``_insert_tasks`` writes of a task: the given columns and the same start for all.
_INSERTED = ("id", "name", "params", "status", "progress", "attempts", "max_attempts",
             "backoff", "queue", "priority", "description", "run_after", "created_at",
             "updated_at", "queued_at", "version")  # fmt: skip


def _unnested(prefix: str, columns: Mapping[str, sa.types.TypeEngine[Any]]) -> Any:
    """A row per element of the array parameters ``<prefix>_<column>``."""
    arrays = [sa.bindparam(f"{prefix}_{name}", type_=postgresql.ARRAY(column_type))
              for name, column_type in columns.items()]  # fmt: skip
    return sa.func.unnest(*arrays).table_valued(*columns, name=f"given_{prefix}").render_derived()


@cache
def _insert_tasks() -> sa.Select[Any]:
    given = _unnested("new", _BATCH_COLUMNS)
    task = sa.select(
        given.c.id,
        given.c.name,
        sa.cast(given.c.params, postgresql.JSONB),
        given.c.status,
        constant(0),
        constant(0),
        given.c.max_attempts,
        given.c.backoff,
        given.c.queue,
        given.c.priority,
        given.c.description,
        given.c.run_after,
        NOW,
        NOW,
        sa.case((given.c.status == constant(Status.QUEUED.value), NOW)),
        constant(1),
    )
    inserted = (
        sa.insert(tasks).from_select(_INSERTED, task).returning(*tasks.c).cte("inserted_tasks")
    )
    statement = _with_creation_event(inserted, _no_notices)
    link = _unnested("link", _LINK_COLUMNS)
    linked = (
        sa.insert(links)
        .from_select([*_LINK_COLUMNS, "created_at"], sa.select(link, NOW))
        .cte("inserted_links")
    )
    return statement.add_cte(linked)


# -- claim --------------------------------------------------------------------------------


def claim_next(
    queues: Collection[str] | None,
    names: Collection[str] | None,
    changes: Mapping[str, Any],
    now: datetime,
    *,
    actor: str,
    notify: Notify,
) -> Bound:
    """Move the next queued task (highest priority, then oldest; of ``queues`` and
    ``names`` when given) to running, with its claim event ("attempt N of M"). Its row
    has one more column, ``MORE_QUEUED``: whether another such task was queued.

    ``FOR UPDATE SKIP LOCKED`` makes concurrent claimers pass each other by."""
    shape, params = shape_of(changes)
    params |= claim_filters(queues, names, "postgresql")
    params |= {"arg_now": now, "arg_actor": actor}
    return Bound(_claim_next(bool(queues), names is not None, shape, notify), params)


#: The column of ``claim_next``'s row that says whether another task was queued.
MORE_QUEUED = "more_queued"


@cache
def _claim_next(by_queue: bool, by_name: bool, shape: Shape, notify: Notify) -> sa.Select[Any]:
    claimed = claim_next_statement(by_queue, by_name, shape, "postgresql").cte("claimed")
    # The statement's snapshot still sees the claimed task as queued: leave it out.
    others = next_queued_statement(by_queue, by_name, "postgresql")
    others = others.where(others.selected_columns[0] != claimed.c.id)
    more_queued = sa.exists(others).label(MORE_QUEUED)
    return _with_claim_event(claimed, notify).add_columns(more_queued)


def _with_claim_event(claimed: sa.CTE, notify: Notify, name: str = "event") -> sa.Select[Any]:
    return _with_transition_event(
        claimed,
        from_status=Status.QUEUED,
        message=sa.func.format(
            constant("attempt %s of %s"), claimed.c.attempts, claimed.c.max_attempts
        ),
        data=sa.func.jsonb_build_object(
            constant("transition"), constant(CLAIM.name), constant("attempt"), claimed.c.attempts
        ),
        notify=notify,
        name=name,
    )


# -- while running ------------------------------------------------------------------------


def record_progress(
    task_id: str,
    attempt: int,
    progress: float,
    step: str | None,
    now: datetime,
    *,
    actor: str | None,
) -> Bound:
    """Store run ``attempt``'s progress with its ``progress`` event. One row, the task's
    ``cancel_requested_at``, while the run owns the task."""
    params = {"arg_task_id": task_id, "arg_attempt": attempt, "arg_progress": progress,
              "arg_step": step, "arg_now": now, "arg_actor": actor}  # fmt: skip
    return Bound(_record_progress(), params)


@cache
def _record_progress() -> sa.Select[Any]:
    updated = record_progress_statement().cte("updated")
    event = sa.select(
        updated.c.id,
        constant("progress"),
        PROGRESS,
        STEP,
        _ACTOR,
        NOW,
    )
    inserted = (
        sa.insert(events)
        .from_select(["task_id", "type", "progress", "step", "actor", "created_at"], event)
        .cte("event")
    )
    return sa.select(updated.c.cancel_requested_at).add_cte(inserted)


# -- end of a run -------------------------------------------------------------------------


def end_run(
    task_id: str,
    attempt: int,
    transition: Transition,
    changes: Mapping[str, Any],
    now: datetime,
    *,
    message: str | None,
    data: dict[str, Any],
    actor: str | None,
    notify: Notify,
    unless_items_failed: bool = False,
) -> Bound:
    """End run ``attempt`` by ``transition`` (from running), with its event and the links'
    ``active`` flag. Matches nothing unless run ``attempt`` still owns the task and, with
    ``unless_items_failed``, none of its items failed."""
    assert transition.allows(Status.RUNNING)
    shape, params = shape_of(changes)
    params |= {"arg_task_id": task_id, "arg_attempt": attempt, "arg_now": now, "arg_actor": actor,
               "arg_message": message, "arg_data": data}  # fmt: skip
    return Bound(_end_run(transition, shape, notify, unless_items_failed), params)


@cache
def _end_run(
    transition: Transition, shape: Shape, notify: Notify, unless_items_failed: bool
) -> sa.Select[Any]:
    return _with_end_event(_ended(transition, shape, unless_items_failed), transition, notify)


def _with_end_event(ended: sa.CTE, transition: Transition, notify: Notify) -> sa.Select[Any]:
    """The ended task's row, once its event is written and, when it left the active
    statuses, its links are no longer active."""
    statement = _with_transition_event(
        ended,
        from_status=Status.RUNNING,
        message=sa.bindparam("arg_message", type_=sa.Text()),
        data=sa.bindparam("arg_data", type_=JSONType),
        notify=notify,
    )
    if transition.target.is_active:
        return statement
    unlinked = (  # running is active: the links stop being so
        sa.update(links)
        .where(links.c.task_id.in_(sa.select(ended.c.id)))
        .values(active=constant(False))
        .cte("unlinked")
    )
    return statement.add_cte(unlinked)


def _ended(transition: Transition, shape: Shape, unless_items_failed: bool) -> sa.CTE:
    """The ``UPDATE`` that ends run ``arg_attempt`` by ``transition``, as a CTE."""
    return end_of_run_statement(transition, shape, unless_items_failed).cte("ended")


# -- end of a run and the next claim ------------------------------------------------------


def complete_then_claim(
    task_id: str,
    attempt: int,
    completion: Mapping[str, Any],
    claim: Mapping[str, Any],
    queues: Collection[str] | None,
    names: Collection[str] | None,
    now: datetime,
    *,
    actor: str,
) -> Bound:
    """Complete run ``attempt`` (setting ``completion``, the state machine's changes) unless
    one of its items failed and, only then, claim the next queued task (of ``queues`` and
    ``names`` when given, setting ``claim``) with both events: what a worker thread does
    between two tasks, in one statement.

    Rows, told apart by their status: the completed task, then the running one it
    claimed if any was queued. No rows: nothing was written (the run no longer owns
    the task, or an item failed)."""
    end_shape, params = shape_of(completion)
    claim_shape, claim_params = shape_of(claim, prefix="next_")
    params |= claim_params | claim_filters(queues, names, "postgresql")
    params |= {"arg_task_id": task_id, "arg_attempt": attempt, "arg_now": now,
               "arg_actor": actor, "arg_message": None,
               "arg_data": {"transition": COMPLETE.name}}  # fmt: skip
    statement = _complete_then_claim(end_shape, claim_shape, bool(queues), names is not None)
    return Bound(statement, params)


@cache
def _complete_then_claim(
    end_shape: Shape, claim_shape: Shape, by_queue: bool, by_name: bool
) -> sa.CompoundSelect[Any]:
    ended = _ended(COMPLETE, end_shape, unless_items_failed=True)
    completed = _with_end_event(ended, COMPLETE, _no_notices)
    claim = claim_next_statement(by_queue, by_name, claim_shape, "postgresql", "next_")
    # Only after a completion: a run that lost its task, or whose items failed, is
    # recorded by the caller first, and its thread claims afterwards.
    claimed = claim.where(sa.exists(sa.select(ended.c.id))).cte("claimed")
    next_task = _with_claim_event(claimed, _no_notices, name="next_event")
    return sa.union_all(completed, next_task)


def _no_notices(_task_id: sa.ColumnElement[Any], _queue: sa.ColumnElement[Any]) -> list[Any]:
    return []  # completed and running wake nobody up
