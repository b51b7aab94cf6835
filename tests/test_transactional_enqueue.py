"""``submit(using=…)`` joins the caller's transaction: a domain row and the task that will
fill it commit or roll back together, and workers hear of the task only after commit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from tasktrail import Executor, Link, TaskContext, TaskRecord, Trail

domain = sa.MetaData()
roadmaps = sa.Table("roadmaps", domain, sa.Column("id", sa.String(20), primary_key=True))


class RecordingExecutor(Executor):
    def __init__(self) -> None:
        self.dispatched: list[str] = []

    def dispatch(self, tasks: Sequence[TaskRecord]) -> None:
        self.dispatched += [t.id for t in tasks]


@pytest.fixture
def app(database_url: str) -> Iterator[tuple[Trail, RecordingExecutor]]:
    executor = RecordingExecutor()
    trail = Trail(database_url, executor=executor)

    @trail.task("roadmap.generate")
    def generate(ctx: TaskContext, roadmap_id: str) -> None:
        return None

    domain.create_all(trail.engine)
    yield trail, executor
    trail.close()


def _counts(trail: Trail) -> tuple[int, int, int]:
    with trail.engine.connect() as conn:
        count = sa.select(sa.func.count())
        return (
            conn.scalar(count.select_from(roadmaps)) or 0,
            len(trail.list_tasks().items),
            len(trail.events()),
        )


def test_a_committed_session_leaves_row_task_and_event_then_dispatches(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    with Session(trail.engine) as session:
        session.execute(roadmaps.insert().values(id="r1"))
        task = trail.submit(
            "roadmap.generate", {"roadmap_id": "r1"}, links=[Link("roadmap", "r1")], using=session
        )
        assert executor.dispatched == []  # not before the commit
        session.commit()

    assert executor.dispatched == [task.id]
    assert _counts(trail) == (1, 1, 1)
    assert trail.tasks_for("roadmap", "r1")[0].id == task.id


def test_a_rolled_back_session_leaves_neither_task_nor_event(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    with Session(trail.engine) as session:
        session.execute(roadmaps.insert().values(id="r1"))
        trail.submit("roadmap.generate", {"roadmap_id": "r1"}, using=session)
        session.rollback()
        session.commit()  # a later, empty commit must not dispatch the rolled-back task

    assert executor.dispatched == []
    assert _counts(trail) == (0, 0, 0)


def test_a_connection_transaction_commits_or_rolls_back_with_the_task(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app

    def failing_request() -> None:
        with trail.engine.begin() as conn:
            conn.execute(roadmaps.insert().values(id="r1"))
            trail.submit("roadmap.generate", {"roadmap_id": "r1"}, using=conn)
            raise RuntimeError("the request failed after the submit")

    with pytest.raises(RuntimeError):
        failing_request()
    assert _counts(trail) == (0, 0, 0)
    assert executor.dispatched == []

    with trail.engine.begin() as conn:
        conn.execute(roadmaps.insert().values(id="r2"))
        task = trail.submit("roadmap.generate", {"roadmap_id": "r2"}, using=conn)
    assert _counts(trail) == (1, 1, 1)
    assert executor.dispatched == [task.id]


def _async_url(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        return database_url.replace("sqlite://", "sqlite+aiosqlite://", 1)
    return database_url.replace("postgresql+psycopg://", "postgresql+psycopg_async://", 1)


def test_an_async_session_commits_or_rolls_back_with_the_task(
    app: tuple[Trail, RecordingExecutor], database_url: str
) -> None:
    trail, executor = app
    engine = create_async_engine(_async_url(database_url))

    async def scenario() -> str:
        async with AsyncSession(engine) as session:
            await session.execute(roadmaps.insert().values(id="r1"))
            await trail.submit_async("roadmap.generate", {"roadmap_id": "r1"}, using=session)
            await session.rollback()
        async with AsyncSession(engine) as session:
            await session.execute(roadmaps.insert().values(id="r2"))
            task = await trail.submit_async("roadmap.generate", {"roadmap_id": "r2"}, using=session)
            await session.commit()
        await engine.dispose()
        return task.id

    task_id = asyncio.run(scenario())
    assert _counts(trail) == (1, 1, 1)
    assert executor.dispatched == [task_id]
