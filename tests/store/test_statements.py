"""How the databases run the claim: from the partial claim index, in claim order, without
sorting the queue, on SQLite without statistics and in PostgreSQL's generic plan (the one a
statement prepared by psycopg ends up with), with statistics and on a table never analyzed;
and a resource's active tasks, from the partial index of active links."""

from __future__ import annotations

import re
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tasktrail import Status, Submission, TaskRecord, Trail
from tasktrail.schema import ACTIVE_LINKS_INDEX, CLAIM_INDEX, DUE_INDEX, links, tasks
from tasktrail.states import CLAIM, changes
from tasktrail.store import statements as q
from tasktrail.store.run_statements import claim_next as claim_next_at_once

FILTERS = [(None, None), (["default", "other"], ["w.a", "w.b"])]


def _fill(trail: Trail) -> None:
    for number in range(300):
        trail.submit("w.a", queue="default" if number % 2 else "other", priority=number % 3)
    for _ in range(100):  # what a claim must not sort or wade through
        task = trail.store.claim(worker="w")
        assert task is not None
        trail.store.complete_run(task.id, task.attempts, None, actor="w")
    if trail.engine.dialect.name == "postgresql":  # as autovacuum would have by now
        with trail.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def _register(trail: Trail) -> None:
    trail.task("w.a")(lambda ctx: None)


def _as_sent(trail: Trail, statement: sa.Executable, params: dict[str, Any]) -> tuple[str, Any]:
    """The SQL text and parameters the driver gets for ``statement`` (run, rolled back)."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, text: str, parameters: Any, *_: Any) -> None:
        sent.append((text, parameters))

    with trail.engine.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", capture)
        with conn.begin() as transaction:
            conn.execute(statement, params)
            transaction.rollback()
    return sent[-1]


def _plan(
    trail: Trail, statement: sa.Executable, params: dict[str, Any], *, generic: bool = True
) -> str:
    """How the database runs ``statement``; on PostgreSQL the generic plan, or with
    ``generic=False`` the one made for the values of ``params``."""
    text, parameters = _as_sent(trail, statement, params)
    with trail.engine.connect() as conn:
        if trail.engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {text}", parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        if not generic:
            rows = conn.exec_driver_sql(f"EXPLAIN {text}", parameters).all()
            conn.rollback()
            return "\n".join(row[0] for row in rows)
        # PREPARE the same text with every parameter NULL: EXPLAIN EXECUTE then shows the
        # plan made without parameter values, the one a prepared statement ends up with.
        names: list[str] = []

        def numbered(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        text = re.sub(r"%\((\w+)\)s", numbered, text)
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE tasktrail_claim AS {text}")
        nulls = f"({', '.join('NULL' for _ in names)})" if names else ""
        rows = conn.exec_driver_sql(f"EXPLAIN EXECUTE tasktrail_claim{nulls}").all()
        conn.exec_driver_sql("DEALLOCATE tasktrail_claim")  # it outlives the transaction
        conn.rollback()
        return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(("queues", "names"), FILTERS)
def test_the_claim_reads_the_claim_index_in_order(
    trail: Trail, queues: list[str] | None, names: list[str] | None
) -> None:
    _register(trail)
    _fill(trail)
    work = changes(CLAIM, worker="w")
    now = datetime.now(UTC)

    if trail.engine.dialect.name == "sqlite":
        claim = q.claim_next(queues, names, work, now, "sqlite")
        plan = _plan(trail, claim.statement, claim.params)
        assert f"USING INDEX {CLAIM_INDEX}" in plan
        assert "TEMP B-TREE" not in plan  # no sort of the queued tasks
    else:
        claim = claim_next_at_once(queues, names, work, now, actor="w", notify=lambda *_: [])
        plan = _plan(trail, claim.statement, claim.params)
        assert f"Index Scan using {CLAIM_INDEX}" in plan, plan
        assert "Sort" not in plan

    claimed = trail.store.claim(worker="w", queues=queues, names=names)
    assert claimed is not None and claimed.attempts == 1


@pytest.mark.parametrize("queues", [None, ["default", "other"]])
def test_the_claim_reads_the_claim_index_on_a_table_never_analyzed(
    trail: Trail, queues: list[str] | None
) -> None:
    """A worker's filters do not make PostgreSQL, without statistics, expect one match and
    sort every queued task (a bitmap scan, then a sort, on each claim)."""
    _register(trail)
    names = ["w.a", "w.b"]
    trail.submit_many([Submission("w.a", queue="default")] * 2000)
    # The dead row versions a drain leaves, and no VACUUM or ANALYZE since: autovacuum
    # off, or not yet run.
    with trail.engine.begin() as conn:
        for _ in range(5):
            for before, after in (("queued", "running"), ("running", "queued")):
                conn.execute(tasks.update().where(tasks.c.status == before).values(status=after))
    work, now = changes(CLAIM, worker="w"), datetime.now(UTC)
    if trail.engine.dialect.name == "postgresql":
        claim = claim_next_at_once(queues, names, work, now, actor="w", notify=lambda *_: [])
    else:
        claim = q.claim_next(queues, names, work, now, "sqlite")

    for generic in (True, False):
        plan = _plan(trail, claim.statement, claim.params, generic=generic)
        assert CLAIM_INDEX in plan and "Bitmap" not in plan, plan
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    claimed = trail.store.claim(worker="w", queues=queues, names=names)
    assert claimed is not None and claimed.attempts == 1


@pytest.mark.parametrize(("queues", "names"), FILTERS)
def test_the_look_before_a_claim_finds_what_the_claim_takes(
    trail: Trail, queues: list[str] | None, names: list[str] | None
) -> None:
    _register(trail)
    _fill(trail)
    dialect = trail.engine.dialect.name
    peek = q.next_queued(queues, names, dialect)
    plan = _plan(trail, peek.statement, peek.params)
    assert CLAIM_INDEX in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan

    with trail.engine.connect() as conn:
        next_id = conn.execute(peek.statement, peek.params).scalar_one()
    claimed = trail.store.claim(worker="w", queues=queues, names=names)
    assert claimed is not None and claimed.id == next_id


def test_the_due_times_come_from_the_partial_index_of_scheduled_tasks(trail: Trail) -> None:
    """The worker's look for the next due time and for the tasks due reads the first
    entries of the due index, not every scheduled task (a big table holds many)."""
    _register(trail)
    _fill(trail)
    now = datetime.now(UTC)
    for hours in range(200, 0, -1):
        trail.submit("w.a", run_after=now + timedelta(hours=hours))
    with trail.engine.begin() as conn:  # the two earliest fall due
        for was, now_due in ((1, -2), (2, -1)):
            conn.execute(
                sa.update(tasks)
                .where(tasks.c.run_after == now + timedelta(hours=was))
                .values(run_after=now + timedelta(hours=now_due))
            )
        due_ids = (
            conn.execute(
                sa.select(tasks.c.id).where(tasks.c.run_after < now).order_by(tasks.c.run_after)
            )
            .scalars()
            .all()
        )
        if trail.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
    dialect = trail.engine.dialect.name
    due = q.due_scheduled(now, 100, dialect)
    for statement, params in [(q.next_run_after(dialect), {}), (due.statement, due.params)]:
        plan = _plan(trail, statement, params)
        assert DUE_INDEX in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan

    assert trail.store.next_due() == now - timedelta(hours=2)
    promoted = trail.store.promote_due()
    assert [task.id for task in promoted] == due_ids and len(due_ids) == 2
    assert {task.status for task in promoted} == {Status.QUEUED}
    assert trail.store.next_due() == now + timedelta(hours=3)


def test_a_claim_with_nothing_queued_waits_for_no_write_lock(trail: Trail) -> None:
    if trail.engine.dialect.name != "sqlite":
        pytest.skip("SQLite has one write lock for the whole file; PostgreSQL locks rows")
    _register(trail)
    trail.submit("w.a", queue="other")
    path = trail.engine.url.database
    assert path is not None
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    try:
        claimed: list[TaskRecord | None] = []
        claiming = threading.Thread(
            target=lambda: claimed.append(trail.store.claim(worker="w", queues=["default"]))
        )
        claiming.start()
        # Behind the write lock it would wait out the 30 s busy timeout; as a reader it
        # sees the empty queue at once.
        claiming.join(timeout=10)
        assert not claiming.is_alive() and claimed == [None]
    finally:
        writer.rollback()
        writer.close()


def _fill_one_resource(trail: Trail) -> None:
    """2,000 tasks linked to the user u1, 20 of them active: enough rows for a plan to
    show whether it reads an index or the whole table."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {"id": f"{n:026d}", "name": "w.a", "params": {}, "created_at": now, "updated_at": now,
         "status": "queued" if n % 100 == 0 else "completed"}
        for n in range(2000)
    ]  # fmt: skip
    with trail.engine.begin() as conn:
        conn.execute(sa.insert(tasks), rows)
        conn.execute(sa.insert(links), [
            {"task_id": row["id"], "resource_type": "user", "resource_id": "u1",
             "created_at": now, "active": row["status"] == "queued"}
            for row in rows
        ])  # fmt: skip
    with trail.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def test_a_resources_active_tasks_come_from_the_partial_index_of_active_links(
    trail: Trail,
) -> None:
    _fill_one_resource(trail)
    active = q.tasks_for("user", "u1", True, dialect=trail.engine.dialect.name)
    plan = _plan(trail, active.statement, active.params)
    assert ACTIVE_LINKS_INDEX in plan
    if trail.engine.dialect.name == "postgresql":  # each task's links, in the same statement
        assert "Index Scan using pk_tasktrail_links on tasktrail_links own_link" in plan, plan
    assert len(trail.store.tasks_for("user", "u1", active=True)) == 20


def test_the_links_of_a_page_are_found_by_task_not_by_reading_them_all(trail: Trail) -> None:
    _fill_one_resource(trail)
    page = q.links_of([f"{n:026d}" for n in range(50)], trail.engine.dialect.name)
    plan = _plan(trail, page.statement, page.params)
    assert "SCAN tasktrail_links" not in plan and "Seq Scan" not in plan, plan
