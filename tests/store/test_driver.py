"""SQLite's hot writes on the driver (``store/driver.py``): they store exactly what
SQLAlchemy's execution stores, raise SQLAlchemy's errors, and step aside for anyone watching
the engine's statements. SQLite only: PostgreSQL's writes are one statement each through
SQLAlchemy (``run_statements``)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tasktrail import Link, TaskContext, Trail
from tasktrail.runner import NextClaim, Runner
from tasktrail.store import driver
from tasktrail.store import statements as q

MOMENT = datetime(2026, 12, 6, 9, 30, 15, 123456, tzinfo=UTC)


def _trail(path: Path, *, watched: bool) -> Trail:
    trail = Trail(f"sqlite:///{path}")
    trail.store.clock = lambda: MOMENT
    if watched:  # a listener of statement events: SQLAlchemy's execution for every write
        sa.event.listen(trail.engine, "before_cursor_execute", lambda *_: None)

    @trail.task("d.report")
    def report(ctx: TaskContext, fail: bool = False) -> dict[str, Any]:
        ctx.progress(40, "halfway")
        ctx.progress(80, None)
        if fail:
            raise RuntimeError("stopped on purpose")
        return {"ok": [1, "two", None], "at": 3.5}

    return trail


def _a_working_life(trail: Trail) -> list[str]:
    """Two tasks run the worker's way: the first completes and claims the second in the
    same write, which fails; a third is cancelled while queued. The three ids."""
    first = trail.submit("d.report", links=[Link("doc", "d1", role="source"), Link("user", "u1")])
    second = trail.submit("d.report", {"fail": True}, links=[Link("doc", "d1")])
    runner = Runner(trail.store, trail.registry, worker="w", progress_interval=0)
    task = trail.store.claim(worker="w")
    claim = NextClaim(queues=None, names=["d.report"])
    while task is not None:
        _, task = runner.run_then_claim(task, claim)
    queued = trail.submit("d.report")
    trail.cancel(queued.id)
    return [first.id, second.id, queued.id]


def _stored(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tasks, links and events tables as SQLite holds it, task ids
    replaced by their order of submission."""
    with sqlite3.connect(path) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM tasktrail_tasks ORDER BY rowid")]
        number = {task_id: index for index, task_id in enumerate(ids)}
        stored = {}
        for table in ("tasktrail_tasks", "tasktrail_links", "tasktrail_events"):
            cursor = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
            columns = [c[0] for c in cursor.description]
            stored[table] = [
                tuple(
                    number[value] if name in ("id", "task_id") and value in number else value
                    for name, value in zip(columns, row, strict=True)
                )
                for row in cursor
            ]
    return stored


def test_the_driver_stores_what_sqlalchemy_stores(tmp_path: Path) -> None:
    lives = {}
    for watched in (False, True):
        path = tmp_path / f"watched-{watched}.db"
        trail = _trail(path, watched=watched)
        with trail.engine.connect() as conn:
            assert driver.direct(conn) is not watched
        _a_working_life(trail)
        trail.close()
        lives[watched] = _stored(path)

    direct, through_sqlalchemy = lives[False], lives[True]
    assert len(direct["tasktrail_events"]) == 12  # 3 submits, 2 claims, 4 reports, 3 ends
    assert direct == through_sqlalchemy


def test_a_task_read_back_after_driver_writes_has_its_values_and_types(tmp_path: Path) -> None:
    trail = _trail(tmp_path / "typed.db", watched=False)
    done, failed, cancelled = (trail.get(task_id) for task_id in _a_working_life(trail))
    assert done.result == {"ok": [1, "two", None], "at": 3.5}
    assert (done.progress, done.current_step) == (100.0, None)
    assert done.completed_at == MOMENT and done.started_at == MOMENT
    assert failed.status.value == "failed" and "stopped on purpose" in (failed.error or "")
    assert cancelled.status.value == "cancelled"
    assert not trail.store.has_active_task("doc", "d1")
    steps = [(e.type, e.progress, e.step) for e in trail.events(done.id)]
    assert ("progress", 40.0, "halfway") in steps and ("progress", 80.0, None) in steps
    trail.close()


def test_an_error_of_the_driver_is_sqlalchemys_and_the_transaction_rolls_back(
    tmp_path: Path,
) -> None:
    trail = _trail(tmp_path / "errors.db", watched=False)
    orphan = q.insert_event(task_id="no-such-task", type="progress", now=MOMENT)
    compiled = driver.compiled_for_driver(orphan.statement, trail.engine.dialect)

    def submit_then_write_an_orphan_event() -> None:
        with trail.store.writing() as conn:
            trail.submit("d.report", using=conn)
            driver.execute(conn, compiled, compiled.parameters(orphan.params))

    with pytest.raises(sa.exc.IntegrityError, match="FOREIGN KEY"):
        submit_then_write_an_orphan_event()

    assert trail.list_tasks().items == ()  # the submit in the same transaction is gone too
    trail.close()


def test_echo_and_async_drivers_take_sqlalchemys_way(tmp_path: Path) -> None:
    echoing = sa.create_engine(f"sqlite:///{tmp_path}/echo.db", echo=True)
    with echoing.connect() as conn:
        assert not driver.direct(conn)
    echoing.dispose()

    async def under_aiosqlite() -> bool:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/async.db")
        async with engine.connect() as conn:
            direct = await conn.run_sync(driver.direct)
        await engine.dispose()
        return direct

    assert asyncio.run(under_aiosqlite()) is False
