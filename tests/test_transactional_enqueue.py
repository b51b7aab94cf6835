"""``submit(using=…)`` joins the caller's transaction: a domain row and the task that will
fill it commit or roll back together, and workers hear of the task only after commit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from tasktrail import Executor, Link, TaskContext, TaskRecord, Trail, enqueue
from tasktrail.schema import tasks
from tasktrail.store import create_engine
from tests.support.transactions import RecordingExecutor, async_url

domain = sa.MetaData()
roadmaps = sa.Table("roadmaps", domain, sa.Column("id", sa.String(20), primary_key=True))
# A reference checked only at COMMIT: the way to make a real COMMIT fail on both databases.
chapters = sa.Table(
    "chapters",
    domain,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column(
        "roadmap_id",
        sa.String(20),
        sa.ForeignKey("roadmaps.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
)


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


def test_an_async_session_commits_or_rolls_back_with_the_task(
    app: tuple[Trail, RecordingExecutor], database_url: str
) -> None:
    trail, executor = app
    engine = create_async_engine(async_url(database_url))

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


def _one_connection_engine(database_url: str) -> sa.Engine:
    """An engine whose every checkout is the same pooled DBAPI connection."""
    return create_engine(database_url, pool_size=1, max_overflow=0)


def test_every_commit_on_one_pooled_connection_dispatches_its_own_tasks(
    app: tuple[Trail, RecordingExecutor], database_url: str
) -> None:
    trail, executor = app
    engine = _one_connection_engine(database_url)
    committed = []
    try:
        with engine.connect() as conn:
            trail.submit("roadmap.generate", {"roadmap_id": "gone"}, using=conn)
            conn.rollback()
        for n in range(3):
            with engine.begin() as conn:
                committed.append(trail.submit("roadmap.generate", {"roadmap_id": n}, using=conn))
            assert executor.dispatched == [t.id for t in committed]
        with engine.connect() as conn:  # commit-as-you-go on one Connection object
            first = trail.submit("roadmap.generate", {"roadmap_id": "a"}, using=conn)
            conn.commit()
            second = trail.submit("roadmap.generate", {"roadmap_id": "b"}, using=conn)
            assert first.id in executor.dispatched  # at the next begin
            conn.commit()
        assert executor.dispatched == [t.id for t in committed] + [first.id, second.id]
    finally:
        engine.dispose()
    assert len(trail.list_tasks().items) == 5


def test_a_task_submitted_in_a_rolled_back_savepoint_is_neither_kept_nor_dispatched(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    with trail.engine.begin() as conn:
        kept = trail.submit("roadmap.generate", {"roadmap_id": "r1"}, using=conn)
        savepoint = conn.begin_nested()
        trail.submit("roadmap.generate", {"roadmap_id": "r2"}, using=conn)
        inner = conn.begin_nested()
        trail.submit("roadmap.generate", {"roadmap_id": "r3"}, using=conn)
        inner.commit()
        savepoint.rollback()
        released = conn.begin_nested()
        also_kept = trail.submit("roadmap.generate", {"roadmap_id": "r4"}, using=conn)
        released.commit()
    with Session(trail.engine) as session:
        session.begin_nested()
        trail.submit("roadmap.generate", {"roadmap_id": "r5"}, using=session)
        session.rollback()  # the savepoint only
        in_session = trail.submit("roadmap.generate", {"roadmap_id": "r6"}, using=session)
        session.commit()

    assert executor.dispatched == [kept.id, also_kept.id, in_session.id]
    assert {t.id for t in trail.list_tasks().items} == {kept.id, also_kept.id, in_session.id}


def test_a_savepoint_opened_before_the_first_task_still_takes_its_tasks_back(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    """The listeners follow a connection from its first task on: a savepoint opened
    earlier holds every task since, and rolling it back drops them all."""
    trail, executor = app
    with trail.engine.begin() as conn:
        outer = conn.begin_nested()
        middle = conn.begin_nested()  # opened before any task too
        trail.submit("roadmap.generate", {"roadmap_id": "r1"}, using=conn)
        inner = conn.begin_nested()
        trail.submit("roadmap.generate", {"roadmap_id": "r2"}, using=conn)
        inner.commit()
        middle.commit()
        outer.rollback()
        released = conn.begin_nested()
        kept = trail.submit("roadmap.generate", {"roadmap_id": "r3"}, using=conn)
        released.commit()
    assert executor.dispatched == [kept.id]
    assert [t.id for t in trail.list_tasks().items] == [kept.id]


def test_only_the_connection_that_submitted_is_followed(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    """The other connections of the engine (the store's own writes among them) carry no
    listeners, so SQLAlchemy dispatches no events for their statements."""
    trail, executor = app
    with trail.engine.begin() as conn:
        task = trail.submit("roadmap.generate", {"roadmap_id": "r1"}, using=conn)
        assert sa.event.contains(conn, "commit", enqueue._on_commit)
        with trail.engine.connect() as other:
            assert not sa.event.contains(other, "commit", enqueue._on_commit)
    assert not sa.event.contains(trail.engine, "commit", enqueue._on_commit)
    assert executor.dispatched == [task.id]
    trail.submit("roadmap.generate", {"roadmap_id": "r2"})
    assert not sa.event.contains(trail.engine, "commit", enqueue._on_commit)


def test_a_failed_commit_dispatches_nothing(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    with trail.engine.connect() as conn:
        conn.execute(chapters.insert().values(id="c1", roadmap_id="no such roadmap"))
        trail.submit("roadmap.generate", {"roadmap_id": "r1"}, using=conn)
        with pytest.raises(sa.exc.IntegrityError):
            conn.commit()
        conn.rollback()  # SQLite keeps the transaction open after a failed COMMIT
    assert executor.dispatched == []
    assert _counts(trail) == (0, 0, 0)

    with trail.engine.begin() as conn:  # the same pooled connection, a good commit
        task = trail.submit("roadmap.generate", {"roadmap_id": "r1"}, using=conn)
    assert executor.dispatched == [task.id]


class VisibilityExecutor(Executor):
    """Looks, from a connection of its own, for each task it is told about."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(database_url, poolclass=sa.NullPool)
        self.seen: dict[str, bool] = {}

    def dispatch(self, tasks_: Sequence[TaskRecord]) -> None:
        with self.engine.connect() as conn:
            for task in tasks_:
                found = conn.scalar(sa.select(tasks.c.id).where(tasks.c.id == task.id))
                self.seen[task.id] = found is not None


def test_the_task_row_is_visible_to_others_when_the_executor_is_told(database_url: str) -> None:
    executor = VisibilityExecutor(database_url)
    trail = Trail(database_url, executor=executor)

    @trail.task("roadmap.generate")
    def generate(ctx: TaskContext, roadmap_id: str) -> None:
        return None

    try:
        with trail.engine.begin() as conn:
            in_connection = trail.submit("roadmap.generate", {"roadmap_id": "r1"}, using=conn)
        with Session(trail.engine) as session:
            in_session = trail.submit("roadmap.generate", {"roadmap_id": "r2"}, using=session)
            session.commit()
        with trail.engine.connect() as conn:
            committed_as_you_go = trail.submit("roadmap.generate", {"roadmap_id": "r3"}, using=conn)
            conn.commit()
    finally:
        trail.close()
        executor.engine.dispose()
    assert executor.seen == {
        in_connection.id: True,
        in_session.id: True,
        committed_as_you_go.id: True,
    }


def test_an_async_connection_dispatches_every_committed_transaction(
    app: tuple[Trail, RecordingExecutor], database_url: str
) -> None:
    trail, executor = app
    engine = create_async_engine(async_url(database_url), pool_size=1, max_overflow=0)

    async def scenario() -> list[str]:
        submitted = []
        try:
            async with engine.begin() as conn:
                await trail.submit_async("roadmap.generate", {"roadmap_id": "x"}, using=conn)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        for n in range(2):
            async with engine.begin() as conn:
                task = await trail.submit_async("roadmap.generate", {"roadmap_id": n}, using=conn)
                submitted.append(task.id)
        await engine.dispose()
        return submitted

    submitted = asyncio.run(scenario())
    assert executor.dispatched == submitted
    assert len(trail.list_tasks().items) == 2
