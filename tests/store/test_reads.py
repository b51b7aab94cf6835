"""The store's reads (``get``, ``list_tasks``, ``tasks_for``), which run statements built once
per shape and build records without the dataclass ``__init__``, return exactly what plain
per-call queries and ``TaskRecord(...)`` give: the same records, fields, links (in order),
roles, ordering and pagination cursors, for every filter they serve; ``has_active_task``
agrees with ``tasks_for``."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tasktrail import Link, Status, TaskContext, TaskNotFound, Trail
from tasktrail.records import LinkRecord, Page, TaskRecord
from tasktrail.schema import links, tasks
from tasktrail.store import statements as q

RESOURCES = [("project", "p1"), ("user", "u1"), ("user", "u2"), ("nothing", "here")]
LIST_FILTERS: list[dict[str, Any]] = [
    {},
    {"statuses": []},
    {"statuses": [Status.FAILED]},
    {"statuses": [Status.QUEUED, Status.CANCELLED]},
    {"name": "boom"},
    {"queue": "other"},
    {"resource": ("user", "u1")},
    {"resource": ("project", "p1"), "statuses": [Status.COMPLETED, Status.QUEUED]},
    {"name": "ok", "queue": "default", "statuses": [Status.COMPLETED, Status.CREATED]},
    {"resource": ("nothing", "here")},
]


@pytest.fixture
def seeded(trail: Trail) -> Trail:
    """Tasks in every status, of two names and queues, with zero to four links (some
    added later, some with a role) to shared resources."""

    @trail.task("ok")
    def ok(ctx: TaskContext, n: int) -> dict[str, int]:
        return {"n": n}

    @trail.task("boom", queue="other")
    def boom(ctx: TaskContext, n: int) -> None:
        raise RuntimeError(f"boom {n}")

    later = datetime.now(UTC) + timedelta(days=1)
    for n in range(26):
        if n == 14:
            trail.run_pending()  # the first ones end completed or failed
        chosen = [Link("project", "p1", role="owner"), Link("user", "u1"),
                  Link("user", "u2", role="requested_by"), Link("document", f"d{n}")]  # fmt: skip
        trail.submit(
            "boom" if n % 4 == 3 else "ok",
            {"n": n},
            links=[link for i, link in enumerate(chosen) if n % (i + 2) == 0],
            run=n % 6 != 5,
            run_after=later if n % 7 == 6 else None,
        )
    ids = [task.id for task in trail.list_tasks(limit=500).items]
    trail.cancel(ids[1])
    trail.cancel(ids[4])
    trail.link(ids[2], Link("user", "u1", role="late"), Link("project", "p1"))
    trail.link(ids[20], Link("user", "u2"))
    return trail


def _exactly(records: Collection[TaskRecord]) -> list[str]:
    """Every field of each record, with the types of its values (``repr`` tells a
    ``Status`` from a string and names each datetime's time zone)."""
    return [repr(vars(record)) for record in records]


def _reference_links(conn: Connection, task_id: str) -> tuple[LinkRecord, ...]:
    rows = conn.execute(
        sa.select(links)
        .where(links.c.task_id == task_id)
        .order_by(links.c.created_at, links.c.resource_type, links.c.resource_id)
    ).all()
    return tuple(
        LinkRecord(task_id=r.task_id, resource_type=r.resource_type, resource_id=r.resource_id,
                   role=r.role, created_at=r.created_at)
        for r in rows
    )  # fmt: skip


def _reference_task(conn: Connection, row: sa.Row[Any], role: str | None = None) -> TaskRecord:
    stored = {column.name: row._mapping[column.name] for column in tasks.c}
    stored |= {"status": Status(stored["status"]), "progress": float(stored["progress"])}
    return TaskRecord(**stored, links=_reference_links(conn, row.id), role=role)


def _reference_page(
    trail: Trail,
    *,
    statuses: Collection[Status] | None = None,
    name: str | None = None,
    queue: str | None = None,
    resource: tuple[str, str] | None = None,
    cursor: str | None,
    limit: int,
) -> Page:
    statement = sa.select(tasks)
    if resource is not None:
        statement = statement.join(links, links.c.task_id == tasks.c.id).where(
            links.c.resource_type == resource[0], links.c.resource_id == resource[1]
        )
    if statuses:
        statement = statement.where(tasks.c.status.in_([s.value for s in statuses]))
    if name is not None:
        statement = statement.where(tasks.c.name == name)
    if queue is not None:
        statement = statement.where(tasks.c.queue == queue)
    if cursor is not None:
        statement = statement.where(tasks.c.id < cursor)
    with trail.engine.connect() as conn:
        rows = conn.execute(statement.order_by(tasks.c.id.desc()).limit(limit + 1)).all()
        records = [_reference_task(conn, row) for row in rows]
    page = records[:limit]
    return Page(items=tuple(page), next_cursor=page[-1].id if len(records) > limit else None)


def _reference_tasks_for(
    trail: Trail,
    resource: tuple[str, str],
    active: bool | None,
    limit: int | None,
    before_id: str | None,
) -> list[TaskRecord]:
    statement = (
        sa.select(tasks, links.c.role.label("link_role"))
        .join(links, links.c.task_id == tasks.c.id)
        .where(links.c.resource_type == resource[0], links.c.resource_id == resource[1])
    )
    if active is not None:
        statement = statement.where(links.c.active == active)
    if before_id is not None:
        statement = statement.where(tasks.c.id < before_id)
    statement = statement.order_by(tasks.c.id.desc()).limit(limit)
    with trail.engine.connect() as conn:
        rows = conn.execute(statement).all()
        return [_reference_task(conn, row, role=row.link_role) for row in rows]


def test_the_seeded_tasks_cover_what_the_reads_distinguish(seeded: Trail) -> None:
    everything = seeded.list_tasks(limit=500).items
    assert {task.status for task in everything} == {
        Status.COMPLETED, Status.FAILED, Status.QUEUED, Status.CREATED, Status.SCHEDULED,
        Status.CANCELLED,
    }  # fmt: skip
    assert {len(task.links) for task in everything} >= {0, 1, 2, 3, 4}
    assert any(task.result is not None for task in everything)


def test_get_returns_each_task_as_a_plain_query_does(seeded: Trail) -> None:
    ids = [task.id for task in seeded.list_tasks(limit=500).items]
    with seeded.engine.connect() as conn:
        rows = conn.execute(sa.select(tasks).order_by(tasks.c.id.desc())).all()
        expected = [_reference_task(conn, row) for row in rows]
    assert _exactly([seeded.get(task_id) for task_id in ids]) == _exactly(expected)
    with pytest.raises(TaskNotFound):
        seeded.get("0" * 26)


@pytest.mark.parametrize("filters", LIST_FILTERS, ids=repr)
@pytest.mark.parametrize("limit", [1, 3, 50])
def test_list_tasks_pages_as_a_plain_query_does(
    seeded: Trail, filters: dict[str, Any], limit: int
) -> None:
    cursor: str | None = None
    while True:
        page = seeded.store.list_tasks(**filters, cursor=cursor, limit=limit)
        expected = _reference_page(seeded, **filters, cursor=cursor, limit=limit)
        assert _exactly(page.items) == _exactly(expected.items)
        assert page.next_cursor == expected.next_cursor
        if page.next_cursor is None:
            break
        cursor = page.next_cursor


@pytest.mark.parametrize("resource", RESOURCES, ids=repr)
@pytest.mark.parametrize("active", [None, True, False])
def test_tasks_for_returns_what_a_plain_query_does(
    seeded: Trail, resource: tuple[str, str], active: bool | None
) -> None:
    linked = _reference_tasks_for(seeded, resource, active, None, None)
    middle = linked[len(linked) // 2].id if linked else None
    for limit in (None, 1, 2):
        for before_id in (None, middle):
            found = seeded.store.tasks_for(*resource, active=active, limit=limit,
                                           before_id=before_id)  # fmt: skip
            expected = _reference_tasks_for(seeded, resource, active, limit, before_id)
            assert _exactly(found) == _exactly(expected)


@pytest.mark.parametrize("resource", [*RESOURCES, ("document", "d0"), ("document", "d1")])
def test_has_active_task_tells_whether_tasks_for_finds_an_active_one(
    seeded: Trail, resource: tuple[str, str]
) -> None:
    expected = bool(seeded.tasks_for(*resource, active=True))
    assert seeded.store.has_active_task(*resource) is expected


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_shape_of_read_is_one_statement_whatever_its_values(dialect: str) -> None:
    unfiltered = {"statuses": [Status.FAILED], "name": None, "queue": None, "resource": None,
                  "before_id": None, "limit": 51, "dialect": dialect}  # fmt: skip

    def listing(**values: Any) -> q.Bound:
        return q.list_tasks(**(unfiltered | values))

    assert listing().statement is listing(statuses={Status.FAILED}, limit=3).statement
    assert listing(name="a").statement is listing(name="b").statement
    assert listing(name="a").statement is not listing(queue="a").statement
    assert listing(statuses=[Status.QUEUED]).statement is not listing().statement
    assert (
        q.tasks_for("user", "u1", True, 50, "x", dialect=dialect).statement
        is q.tasks_for("user", "u2", True, 10, "y", dialect=dialect).statement
    )
    assert q.links_of(["a"], dialect).statement is q.links_of(["b", "c"], dialect).statement
    assert q.get_task("a", dialect).statement is q.get_task("b", dialect).statement
    assert q.has_active_task("a", "b").statement is q.has_active_task("c", "d").statement
    events: dict[str, Any] = {"task_id": None, "resource": None, "after": 0, "limit": 10}
    assert (
        q.list_events(**events | {"task_id": "a", "after": 5}).statement
        is q.list_events(**events | {"task_id": "b", "limit": 3}).statement
    )
    by_resource = q.list_events(**events | {"resource": ("user", "u1")}).statement
    assert by_resource is q.list_events(**events | {"resource": ("user", "u2")}).statement
    assert by_resource is not q.list_events(**events).statement
    assert q.list_events(**events | {"until": 9}).statement is not q.list_events(**events).statement
    assert q.event_ids(1, 2).statement is q.event_ids(3, 4).statement
    assert q.item_counts("a").statement is q.item_counts("b").statement
    assert q.failed_item_keys("a", 1).statement is q.failed_item_keys("b", 5).statement


def test_a_read_on_postgresql_is_one_statement_outside_a_transaction(seeded: Trail) -> None:
    """On PostgreSQL a read of records carries the links in the tasks' rows, and every read
    of one statement runs in autocommit (one round trip); SQLite reads the links in a second
    statement of the same read transaction."""
    postgresql = seeded.engine.dialect.name == "postgresql"
    seen: list[tuple[str, bool]] = []

    def executed(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        driver: Any = conn.connection.driver_connection
        as_expected = driver.autocommit if postgresql else driver.in_transaction
        seen.append((statement, as_expected))

    task_id = seeded.tasks_for("user", "u1", limit=1)[0].id
    records: list[Callable[[], object]] = [
        lambda: seeded.get(task_id),
        lambda: seeded.tasks_for("user", "u1", limit=3),
        lambda: seeded.list_tasks(limit=3),
        lambda: seeded.store.list_tasks(resource=("project", "p1"), limit=3),
    ]
    others: list[Callable[[], object]] = [
        lambda: seeded.events(task_id),
        lambda: seeded.item_counts(task_id),
        lambda: seeded.store.has_active_task("user", "u1"),
        lambda: seeded.store.last_event_id(),
    ]
    for read in [*records, *others]:
        seen.clear()
        sa.event.listen(seeded.engine, "before_cursor_execute", executed)
        try:
            read()
        finally:
            sa.event.remove(seeded.engine, "before_cursor_execute", executed)
        statements = 1 if postgresql or read in others else 2
        assert len(seen) == statements, [statement for statement, _ in seen]
        assert all(as_expected for _, as_expected in seen)


def test_links_read_through_an_engine_in_another_time_zone_are_the_same_instants(
    database_url: str,
) -> None:
    """PostgreSQL writes a link's ``created_at`` into the row's JSON with the session's
    offset; an application's engine in its own zone still reads back the instant stored."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the links ride as JSON on PostgreSQL only")
    engine = sa.create_engine(database_url, connect_args={"options": "-c TimeZone=Asia/Kathmandu"})
    trail = Trail(engine=engine)

    @trail.task("anything")
    def anything(ctx: TaskContext) -> None:
        pass

    try:
        with engine.connect() as conn:  # the zone is the session's: +05:45, not UTC
            assert conn.exec_driver_sql("SHOW TimeZone").scalar_one() == "Asia/Kathmandu"
        submitted = trail.submit(
            "anything", links=[Link("user", "u1"), Link("doc", "d1")], run=False
        )
        with engine.connect() as conn:
            expected = _reference_links(conn, submitted.id)
        assert len(expected) == 2
        for found in (
            trail.get(submitted.id),
            trail.tasks_for("user", "u1")[0],
            trail.list_tasks(limit=1).items[0],
        ):
            assert found.links == expected
            assert all(link.created_at.tzinfo is UTC for link in found.links)
    finally:
        trail.close()
        engine.dispose()
