"""``submit_many``: a batch of tasks written in one transaction, all or none, each as
``submit`` would write it; on each database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from tasktrail import (
    InvalidInput,
    Link,
    Status,
    Submission,
    TaskContext,
    TaskRecord,
    Trail,
    UnknownTask,
    Worker,
)
from tests.support.polling import eventually
from tests.support.transactions import RecordingExecutor, async_url


@pytest.fixture
def app(database_url: str) -> Iterator[tuple[Trail, RecordingExecutor]]:
    executor = RecordingExecutor()
    trail = Trail(database_url, executor=executor, auto_migrate=True)

    @trail.task("chapter.write")
    def write(ctx: TaskContext, chapter: int) -> int:
        return chapter

    yield trail, executor
    trail.close()


def _chapters(*numbers: int) -> list[Submission]:
    return [
        Submission(
            "chapter.write",
            {"chapter": n},
            links=[Link("roadmap", "r1"), Link("chapter", f"c{n}", role="author")],
        )
        for n in numbers
    ]


def _nothing_written(trail: Trail) -> None:
    assert trail.list_tasks().items == ()
    assert trail.events() == []


def test_every_task_is_written_with_its_links_and_event_in_order(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    records = trail.submit_many(_chapters(1, 2, 3), actor="alice")

    assert [r.params for r in records] == [{"chapter": 1}, {"chapter": 2}, {"chapter": 3}]
    assert [r.status for r in records] == [Status.QUEUED] * 3
    assert executor.dispatched == [r.id for r in records]
    for number, record in enumerate(records, start=1):
        stored = trail.get(record.id)
        assert stored == record
        assert {(link.resource_type, link.resource_id, link.role) for link in stored.links} == {
            ("roadmap", "r1", None),
            ("chapter", f"c{number}", "author"),
        }
        [event] = trail.events(record.id)
        assert (event.to_status, event.actor, event.message) == ("queued", "alice", "submitted")
    assert [t.id for t in trail.tasks_for("roadmap", "r1")] == [r.id for r in reversed(records)]
    assert len({r.created_at for r in records}) == 1  # one moment: one transaction

    assert trail.run_pending() == 3  # claimed in the batch's order
    assert [trail.get(r.id).result for r in records] == [1, 2, 3]


def test_each_submission_keeps_its_own_options(app: tuple[Trail, RecordingExecutor]) -> None:
    trail, executor = app
    held, urgent = trail.submit_many(
        [
            Submission("chapter.write", {"chapter": 1}, run=False, description="later"),
            Submission("chapter.write", {"chapter": 2}, priority=5, queue="fast", max_attempts=2),
        ]
    )
    assert (held.status, held.description) == (Status.CREATED, "later")
    assert (urgent.priority, urgent.queue, urgent.max_attempts) == (5, "fast", 2)
    assert executor.dispatched == [urgent.id]  # the created one waits for run()


def test_a_taken_dedupe_key_and_a_key_repeated_in_the_batch_deduplicate(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    taken = trail.submit("chapter.write", {"chapter": 0}, dedupe_key="k0")
    executor.dispatched.clear()

    again, first, repeated, plain = trail.submit_many(
        [
            Submission("chapter.write", {"chapter": 1}, dedupe_key="k0"),
            Submission("chapter.write", {"chapter": 2}, dedupe_key="k1"),
            Submission("chapter.write", {"chapter": 3}, dedupe_key="k1"),
            Submission("chapter.write", {"chapter": 4}),
        ]
    )
    assert (again.id, again.deduplicated, again.params) == (taken.id, True, {"chapter": 0})
    assert (first.deduplicated, first.params) == (False, {"chapter": 2})
    assert (repeated.id, repeated.deduplicated) == (first.id, True)
    assert not plain.deduplicated
    assert executor.dispatched == [first.id, plain.id]
    assert len(trail.list_tasks().items) == 3
    assert len(trail.events()) == 3


def test_one_bad_submission_refuses_the_batch_naming_it(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    batch = _chapters(1, 2)
    with pytest.raises(InvalidInput, match=r"^submission 2: max_attempts must be from 1"):
        trail.submit_many([*batch, Submission("chapter.write", {"chapter": 3}, max_attempts=0)])
    with pytest.raises(UnknownTask, match=r"^submission 1: no task registered as 'nope'"):
        trail.submit_many([batch[0], Submission("nope")])
    with pytest.raises(InvalidInput, match=r"submission 0: .*missing a required argument"):
        trail.submit_many([Submission("chapter.write")])
    with pytest.raises(InvalidInput, match=r"^submission 1: name must be a string, got \['x'\]"):
        trail.submit_many([batch[0], Submission(["x"])])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"submission 1 must be a tasktrail.Submission"):
        trail.submit_many([batch[0], {"name": "chapter.write"}])  # type: ignore[list-item]
    _nothing_written(trail)
    assert executor.dispatched == []


@pytest.mark.parametrize("given", [Submission("chapter.write"), "chapter.write", 3, None])
def test_something_other_than_a_list_of_submissions_is_refused(
    app: tuple[Trail, RecordingExecutor], given: object
) -> None:
    trail, _ = app
    with pytest.raises(InvalidInput, match=r"submissions must be a list of tasktrail\.Submission"):
        trail.submit_many(given)  # type: ignore[arg-type]
    _nothing_written(trail)


def test_an_empty_batch_writes_nothing(app: tuple[Trail, RecordingExecutor]) -> None:
    trail, executor = app
    assert trail.submit_many([]) == []
    assert trail.submit_many(iter([])) == []
    _nothing_written(trail)
    assert executor.dispatched == []


def _refuse_a_description(trail: Trail, description: str) -> None:
    """A trigger that makes the database itself refuse a task: a failure inside the
    transaction, after the batch's first tasks were written."""
    with trail.engine.begin() as conn:
        if trail.engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON tasktrail_tasks"
                f" WHEN NEW.description = '{description}'"
                " BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF NEW.description = '{description}' THEN"
                " RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON tasktrail_tasks"
                " FOR EACH ROW EXECUTE FUNCTION refuse()"
            )


def test_a_database_error_midway_leaves_none_of_the_batch(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    _refuse_a_description(trail, "boom")
    batch = [*_chapters(1, 2), Submission("chapter.write", {"chapter": 3}, description="boom")]
    with pytest.raises(sa.exc.DBAPIError, match="refused by a trigger"):
        trail.submit_many(batch)
    _nothing_written(trail)
    assert executor.dispatched == []
    assert len(trail.submit_many(batch[:2])) == 2  # the connection was left usable


def test_in_the_callers_transaction_the_batch_commits_or_rolls_back_with_it(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    trail, executor = app
    with trail.engine.connect() as conn:
        with conn.begin() as transaction:
            trail.submit_many(_chapters(1, 2), using=conn)
            transaction.rollback()
        _nothing_written(trail)
        assert executor.dispatched == []

        with Session(bind=conn) as session:
            records = trail.submit_many(_chapters(3, 4), using=session)
            assert executor.dispatched == []  # not before the commit
            session.commit()
    assert executor.dispatched == [r.id for r in records]
    assert [trail.get(r.id).params for r in records] == [{"chapter": 3}, {"chapter": 4}]


def test_the_async_twin_with_and_without_an_async_session(
    app: tuple[Trail, RecordingExecutor], database_url: str
) -> None:
    trail, executor = app
    engine = create_async_engine(async_url(database_url))

    async def scenario() -> list[TaskRecord]:
        own = await trail.submit_many_async(_chapters(1))
        async with AsyncSession(engine) as session:
            await trail.submit_many_async(_chapters(2), using=session)
            await session.rollback()
        async with AsyncSession(engine) as session:
            joined = await trail.submit_many_async(_chapters(3), using=session)
            await session.commit()
        await engine.dispose()
        return own + joined

    records = asyncio.run(scenario())
    assert executor.dispatched == [r.id for r in records]
    assert [t.params for t in trail.list_tasks().items] == [{"chapter": 3}, {"chapter": 1}]


def test_batches_sharing_keys_in_any_order_never_deadlock(
    app: tuple[Trail, RecordingExecutor],
) -> None:
    """Four threads write batches of the same ten keys, each in its own order: on
    PostgreSQL each insert waits for the transaction holding its key, so batches written
    in their given order would wait for each other in a cycle."""
    trail, _ = app
    keys = [f"key-{n}" for n in range(10)]
    errors: list[BaseException] = []
    winners: list[dict[str, str]] = []
    start = threading.Barrier(4)

    def submit(thread: int) -> None:
        order = keys[thread:] + keys[:thread] if thread % 2 else list(reversed(keys))
        start.wait()
        try:
            for _ in range(5):
                batch = [Submission("chapter.write", {"chapter": 1}, dedupe_key=k) for k in order]
                records = trail.submit_many(batch)
                winners.append({k: r.id for k, r in zip(order, records, strict=True)})
        except BaseException as error:  # pragma: no cover - the failure being tested
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    stored = {t.dedupe_key: t.id for t in trail.list_tasks(limit=100).items}
    assert len(stored) == len(keys)
    assert all(batch == stored for batch in winners)


def test_a_worker_elsewhere_hears_of_the_batch_at_once(database_url: str) -> None:
    """A worker that never polls, on a Trail of its own (as in another process): only the
    batch's ``NOTIFY`` (PostgreSQL) or the file's bell and commit watcher (SQLite) can
    tell it of the queued tasks, and of the scheduled one."""
    worker_trail = Trail(database_url, auto_migrate=True)
    submitter = Trail(database_url)
    for trail in (worker_trail, submitter):
        trail.task("chapter.write")(lambda ctx, chapter: chapter)
    worker = Worker(worker_trail, poll_interval=60)
    worker.start()
    try:
        due = submitter.store.clock() + timedelta(seconds=0.3)
        batch = [
            *_chapters(1, 2),
            Submission("chapter.write", {"chapter": 3}, queue="other"),
            Submission("chapter.write", {"chapter": 4}, run_after=due),
        ]
        records = submitter.submit_many(batch)
        assert records[3].status is Status.SCHEDULED

        def results() -> list[object] | None:
            done = [worker_trail.get(r.id) for r in records]
            return [t.result for t in done] if all(t.completed_at for t in done) else None

        assert eventually(results, timeout=10) == [1, 2, 3, 4]
    finally:
        worker.stop(timeout=5)
        submitter.close()
        worker_trail.close()
