"""The same stories, told once, run by each executor: the embedded worker (on SQLite and
on PostgreSQL) and Celery workers (on PostgreSQL). What a user can observe — statuses,
fields, the history — must not depend on where the task ran."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tasktrail import Status, Submission, Trail, Worker
from tasktrail.contrib.celery import RUN_TASK_NAME
from tests.contrib.conftest import CeleryWorker, StartWorker
from tests.support.celery_app import make_trail, register, side_effects
from tests.support.polling import eventually


@dataclass
class Setup:
    trail: Trail
    queue: str
    start_workers: Callable[..., object]
    #: Whether the executor's workers discarded the message of this cancelled task; None
    #: when the executor has no messages (the embedded worker reads the database).
    discarded: Callable[[str], bool] | None = None


@pytest.fixture(params=["embedded-sqlite", "embedded-postgresql", "celery-postgresql"])
def setup(request: pytest.FixtureRequest, queue: str, tmp_path: Path) -> Iterator[Setup]:
    kind, backend = request.param.split("-")
    if kind == "celery":
        trail = make_trail(request.getfixturevalue("postgres_url"))
        side_effects.create(trail.engine)
        start_worker: StartWorker = request.getfixturevalue("start_worker")
        started: list[CeleryWorker] = []

        def start_celery(concurrency: int = 2) -> None:
            started.append(start_worker("w1", concurrency=concurrency))

        def discarded(task_id: str) -> bool:
            line = f"Discarding revoked task: {RUN_TASK_NAME}[{task_id}]"
            return any(line in worker.log.read_text() for worker in started)

        yield Setup(trail, queue, start_celery, discarded)
        trail.close()
        return
    url = (
        f"sqlite:///{tmp_path}/tasktrail.db"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    trail = Trail(url)
    register(trail)
    side_effects.create(trail.engine)
    workers: list[Worker] = []

    def start(concurrency: int = 2) -> None:
        workers.append(Worker(trail, concurrency=concurrency, queues=[queue]))
        workers[-1].start()

    yield Setup(trail, queue, start)
    for worker in workers:
        worker.stop(timeout=5)
    trail.close()


def _moves(trail: Trail, task_id: str) -> list[tuple[Status | None, Status | None]]:
    return [(e.from_status, e.to_status) for e in trail.events(task_id) if e.to_status]


def _is(trail: Trail, task_id: str, status: Status) -> Callable[[], bool]:
    return lambda: trail.get(task_id).status is status


@pytest.mark.slow
def test_a_cancelled_queued_task_never_runs(setup: Setup) -> None:
    trail = setup.trail
    setup.start_workers(concurrency=1)
    # The only slot is busy, so the next task waits, queued, while a worker is alive.
    blocker = trail.submit("celery.long", {"seconds": 60}, queue=setup.queue)
    eventually(_is(trail, blocker.id, Status.RUNNING), timeout=30)
    doomed = trail.submit("celery.record", {"n": 1}, queue=setup.queue)
    later = trail.submit("celery.record", {"n": 2}, queue=setup.queue)
    assert trail.cancel(doomed.id, reason="not needed").status is Status.CANCELLED
    trail.cancel(blocker.id, reason="make room")

    eventually(_is(trail, later.id, Status.COMPLETED), timeout=30)
    assert _moves(trail, doomed.id) == [(None, Status.QUEUED), (Status.QUEUED, Status.CANCELLED)]
    assert trail.get(doomed.id).attempts == 0
    with trail.engine.connect() as conn:
        ran = set(conn.execute(sa.select(side_effects.c.task_id)).scalars())
    assert ran == {later.id}  # the function never ran for the cancelled task
    if setup.discarded is not None:
        # Its message was revoked: the worker dropped it without even trying a claim.
        assert setup.discarded(doomed.id)


@pytest.mark.slow
def test_a_cancelled_running_task_stops_at_its_next_progress(setup: Setup) -> None:
    trail = setup.trail
    setup.start_workers()
    task = trail.submit("celery.long", {"seconds": 60}, queue=setup.queue)
    eventually(_is(trail, task.id, Status.RUNNING), timeout=30)

    asked = trail.cancel(task.id, reason="by user")
    assert asked.status is Status.RUNNING and asked.cancel_requested_at is not None
    eventually(_is(trail, task.id, Status.CANCELLED), timeout=10)

    cancelled = trail.get(task.id)
    assert cancelled.completed_at is not None and cancelled.error is None
    types = [e.type for e in trail.events(task.id)]
    assert types.index("cancel_requested") < len(types) - 1
    assert _moves(trail, task.id)[-1] == (Status.RUNNING, Status.CANCELLED)


@pytest.mark.slow
def test_retrying_a_failed_task_runs_it_again_until_it_succeeds(setup: Setup) -> None:
    trail = setup.trail
    setup.start_workers()
    task = trail.submit("celery.fails_twice", queue=setup.queue)
    for attempt in (1, 2):
        eventually(_is(trail, task.id, Status.FAILED), timeout=30)
        assert trail.get(task.id).error == f"RuntimeError: attempt {attempt} failed"
        retried = trail.retry(task.id)
        assert (retried.status, retried.error, retried.completed_at) == (Status.QUEUED, None, None)
    eventually(_is(trail, task.id, Status.COMPLETED), timeout=30)

    done = trail.get(task.id)
    assert (done.attempts, done.result, done.error) == (3, 3, None)
    running = [m for m in _moves(trail, task.id) if m[1] is Status.RUNNING]
    assert len(running) == 3


@pytest.mark.slow
def test_a_batch_runs_every_task_once(setup: Setup) -> None:
    trail = setup.trail
    setup.start_workers()
    batch = [Submission("celery.record", {"n": n}, queue=setup.queue) for n in range(20)]
    held = Submission("celery.record", {"n": 99}, queue=setup.queue, run=False)
    tasks = trail.submit_many([*batch, held])

    for task in tasks[:-1]:
        eventually(_is(trail, task.id, Status.COMPLETED), timeout=30)
    assert [trail.get(t.id).result for t in tasks[:-1]] == list(range(20))
    with trail.engine.connect() as conn:
        ran = list(conn.execute(sa.select(side_effects.c.task_id)).scalars())
    assert sorted(ran) == sorted(t.id for t in tasks[:-1])  # each once, the held one never
    assert trail.get(tasks[-1].id).status is Status.CREATED
