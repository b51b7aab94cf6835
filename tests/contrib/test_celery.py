"""Celery as the executor: real Redis broker, real prefork ``celery worker`` processes,
PostgreSQL. The tracking must be exactly what the embedded worker gives."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tasktrail import Status, Trail
from tasktrail.schema import events, tasks
from tests.contrib.conftest import RedisServer, StartWorker
from tests.support.celery_app import make_trail, side_effects
from tests.support.polling import eventually


def _statuses(trail: Trail, ids: list[str]) -> Counter[Status]:
    return Counter(trail.get(task_id).status for task_id in ids)


def _runs(trail: Trail) -> Counter[str]:
    with trail.engine.connect() as conn:
        return Counter(conn.execute(sa.select(side_effects.c.task_id)).scalars())


@pytest.mark.slow
def test_a_thousand_tasks_on_two_workers_each_run_once_with_celery_ids(
    celery_trail: Trail, start_worker: StartWorker, queue: str
) -> None:
    start_worker("w1")
    start_worker("w2")
    ids = [celery_trail.submit("celery.record", {"n": n}, queue=queue).id for n in range(1000)]

    eventually(
        lambda: len(celery_trail.list_tasks(status=["queued", "running"], limit=1).items) == 0,
        timeout=180,
    )

    assert _statuses(celery_trail, ids) == {Status.COMPLETED: 1000}
    runs = _runs(celery_trail)
    assert set(runs) == set(ids) and set(runs.values()) == {1}
    with celery_trail.engine.connect() as conn:
        pids = set(conn.execute(sa.select(side_effects.c.pid)).scalars())
        # Every task's run has the Celery task id equal to its tasktrail id, and progress.
        tracked = conn.execute(
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(
                tasks.c.id.in_(ids),
                tasks.c.external_id == tasks.c.id,
                sa.exists().where(events.c.task_id == tasks.c.id, events.c.type == "progress"),
            )
        ).scalar_one()
    assert len(pids) >= 3  # both workers' pool processes took part
    assert tracked == 1000


FAST_REAPER = {"TASKTRAIL_HEARTBEAT_INTERVAL": "0.5", "TASKTRAIL_TEST_REDISPATCH_AFTER": "1"}


def _outage_env(broker: RedisServer) -> dict[str, str]:
    return {"TASKTRAIL_TEST_REDIS_URL": broker.url, **FAST_REAPER}


@pytest.mark.slow
def test_tasks_submitted_while_the_broker_is_down_run_once_it_is_back(
    own_redis: RedisServer, postgres_url: str, start_worker: StartWorker, queue: str
) -> None:
    trail = make_trail(postgres_url, own_redis.url)
    side_effects.create(trail.engine)
    worker = start_worker("w1", extra_env=_outage_env(own_redis))
    try:
        before = [trail.submit("celery.record", {"n": n}, queue=queue).id for n in range(5)]
        eventually(lambda: _statuses(trail, before) == {Status.COMPLETED: 5}, timeout=60)

        own_redis.stop()  # with the worker alive
        during = [trail.submit("celery.record", {"n": n}, queue=queue).id for n in range(20)]
        at = datetime.now(UTC) + timedelta(seconds=0.5)
        later = trail.submit("celery.record", {"n": 99}, queue=queue, run_after=at)
        assert _statuses(trail, during) == {Status.QUEUED: 20}  # recorded at once
        assert trail.get(later.id).status is Status.SCHEDULED
        assert worker.process.poll() is None
        own_redis.start()

        everything = [*before, *during, later.id]
        eventually(lambda: _statuses(trail, everything) == {Status.COMPLETED: 26}, timeout=90)
        runs = _runs(trail)
        assert set(runs) == set(everything) and set(runs.values()) == {1}
        started = [e for e in trail.events(later.id) if e.to_status is Status.RUNNING]
        assert len(started) == 1 and started[0].created_at >= at
    finally:
        trail.close()


@pytest.mark.slow
def test_a_backoff_retry_sent_while_the_broker_is_down_still_runs_once(
    own_redis: RedisServer,
    postgres_url: str,
    start_worker: StartWorker,
    queue: str,
    tmp_path: Path,
) -> None:
    trail = make_trail(postgres_url, own_redis.url)
    side_effects.create(trail.engine)
    worker = start_worker("w1", extra_env=_outage_env(own_redis))
    gate = tmp_path / "fail-now"
    try:
        task = trail.submit("celery.fails_at_gate", {"gate": str(gate)}, queue=queue)
        eventually(lambda: trail.get(task.id).status is Status.RUNNING, timeout=30)
        own_redis.stop()
        gate.touch()  # attempt 1 fails now, and its retry's message cannot be sent
        eventually(lambda: f"could not send task {task.id}" in worker.log.read_text(), timeout=30)
        assert trail.get(task.id).status in (Status.SCHEDULED, Status.QUEUED)
        assert worker.process.poll() is None
        own_redis.start()

        eventually(lambda: trail.get(task.id).status is Status.COMPLETED, timeout=90)
        done = trail.get(task.id)
        assert (done.attempts, done.result) == (2, 2)
        assert _runs(trail) == {task.id: 1}
        moves = [(e.from_status, e.to_status) for e in trail.events(task.id) if e.to_status]
        assert moves == [
            (None, Status.QUEUED),
            (Status.QUEUED, Status.RUNNING),
            (Status.RUNNING, Status.SCHEDULED),  # the backoff; its message was lost
            (Status.SCHEDULED, Status.QUEUED),  # the reaper: due, never claimed
            (Status.QUEUED, Status.RUNNING),
            (Status.RUNNING, Status.COMPLETED),
        ]
    finally:
        trail.close()


@pytest.mark.slow
def test_a_plain_celery_worker_runs_tasks_of_tasktrails_default_queue(
    own_redis: RedisServer, postgres_url: str, start_worker: StartWorker
) -> None:
    # An isolated broker: a worker without -Q consumes Celery's default queue.
    trail = make_trail(postgres_url, own_redis.url)
    side_effects.create(trail.engine)
    start_worker("w1", queues=None, extra_env={"TASKTRAIL_TEST_REDIS_URL": own_redis.url})
    try:
        task = trail.submit("celery.record", {"n": 1})
        assert task.queue == "default"
        eventually(lambda: trail.get(task.id).status is Status.COMPLETED, timeout=30)
        assert _runs(trail) == {task.id: 1}
    finally:
        trail.close()


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_recovered_by_the_other(
    celery_trail: Trail, start_worker: StartWorker, queue: str
) -> None:
    fast_beats = {"TASKTRAIL_HEARTBEAT_INTERVAL": "0.2", "TASKTRAIL_HEARTBEAT_TIMEOUT": "1.5"}
    workers = {
        name: start_worker(name, concurrency=1, extra_env=fast_beats) for name in ("w1", "w2")
    }
    task = celery_trail.submit("celery.long", {"seconds": 2.0}, queue=queue)
    eventually(lambda: celery_trail.get(task.id).status is Status.RUNNING, timeout=30)
    first = celery_trail.get(task.id)
    victim = next(name for name in workers if f"{name}-{queue}@" in (first.worker or ""))
    workers[victim].kill()

    eventually(lambda: celery_trail.get(task.id).status is Status.COMPLETED, timeout=60)

    done = celery_trail.get(task.id)
    assert done.attempts == 2 and done.worker != first.worker
    moves = [(e.from_status, e.to_status) for e in celery_trail.events(task.id) if e.to_status]
    assert moves == [
        (None, Status.QUEUED),
        (Status.QUEUED, Status.RUNNING),
        (Status.RUNNING, Status.SCHEDULED),  # the reaper: worker lost, attempts left
        (Status.SCHEDULED, Status.QUEUED),
        (Status.QUEUED, Status.RUNNING),
        (Status.RUNNING, Status.COMPLETED),
    ]
    assert celery_trail.list_tasks(status="running").items == ()


@pytest.mark.slow
def test_backoff_retries_are_tasktrails_own(
    celery_trail: Trail, start_worker: StartWorker, queue: str
) -> None:
    start_worker("w1")
    task = celery_trail.submit("celery.flaky", queue=queue)
    eventually(lambda: celery_trail.get(task.id).status is Status.COMPLETED, timeout=60)

    done = celery_trail.get(task.id)
    assert (done.attempts, done.result) == (3, 3)
    events = celery_trail.events(task.id)
    backoffs = [e for e in events if e.to_status is Status.SCHEDULED]
    starts = [e.created_at for e in events if e.to_status is Status.RUNNING]
    assert len(backoffs) == 2 and len(starts) == 3
    # run_after is set from a clock read after the previous claim, and a claim refuses a
    # task before its run_after: so each gap from claim to claim is at least retry_in.
    for backoff, start, next_start in zip(backoffs, starts[:-1], starts[1:], strict=True):
        assert (next_start - start).total_seconds() >= backoff.data["retry_in"]


@pytest.mark.slow
def test_terminate_on_cancel_kills_a_run_that_never_checks(
    postgres_url: str, redis_broker: str, start_worker: StartWorker, queue: str
) -> None:
    trail = make_trail(postgres_url, redis_broker, terminate_on_cancel=True)
    start_worker("w1", concurrency=1)
    task = trail.submit("celery.stubborn", {"seconds": 300}, queue=queue)
    eventually(lambda: trail.get(task.id).status is Status.RUNNING, timeout=30)

    cancelled = trail.cancel(task.id, reason="stuck")

    assert cancelled.status is Status.CANCELLED
    assert trail.get(task.id) == cancelled
    after = trail.submit("celery.stubborn", {"seconds": 0}, queue=queue)
    eventually(lambda: trail.get(after.id).status is Status.COMPLETED, timeout=30)
    assert trail.get(task.id).status is Status.CANCELLED  # not reaped, not retried
    trail.close()
