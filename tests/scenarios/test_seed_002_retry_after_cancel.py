"""Seed 002: the user clicks retry on a cancelled task; Celery gets the job, but the page
keeps showing "cancelled" with the old completed_at and error, because the retry path never
updated the task row. With tasktrail the retry call itself is the status change."""

from __future__ import annotations

import threading

from tasktrail import Status, TaskContext, Trail
from tasktrail.schema import tasks


def test_retrying_a_cancelled_task_is_queued_clean_with_its_event_before_any_worker(
    trail: Trail,
) -> None:
    started = threading.Event()

    @trail.task("roadmap.content")
    def content(ctx: TaskContext, roadmap_id: str) -> None:
        started.set()
        while True:  # a long generation, stopped only by the cancel
            ctx.check_cancelled()

    task = trail.submit("roadmap.content", {"roadmap_id": "r1"})
    runner = threading.Thread(target=trail.run_pending)
    runner.start()
    assert started.wait(10)
    trail.cancel(task.id, reason="Task cancelled by user")
    runner.join(10)
    assert not runner.is_alive()
    # tasktrail's own cancel stores no error; the seed's row (as the hand-rolled system,
    # or an older version, left it) carried one, with a partial result.
    with trail.engine.begin() as conn:
        conn.execute(
            tasks.update()
            .where(tasks.c.id == task.id)
            .values(error="Task cancelled by user", result={"sections": 3})
        )
    cancelled = trail.get(task.id)
    assert cancelled.status is Status.CANCELLED
    assert cancelled.completed_at is not None
    assert cancelled.error == "Task cancelled by user"
    assert cancelled.result == {"sections": 3}
    events_before = trail.events(task.id)

    retried = trail.retry(task.id)

    assert retried.status is Status.QUEUED
    assert retried.completed_at is None
    assert retried.error is None
    assert retried.result is None
    assert retried.progress == 0
    assert retried.attempts == cancelled.attempts  # no worker has touched it since
    new_events = trail.events(task.id, after=events_before[-1].id)
    assert [(e.type, e.from_status, e.to_status) for e in new_events] == [
        ("transition", Status.CANCELLED, Status.QUEUED)
    ]
    assert trail.get(task.id) == retried  # what the call returned is what is stored


def test_retrying_a_failed_task_clears_its_error_at_once(trail: Trail) -> None:
    @trail.task("roadmap.content")
    def content(ctx: TaskContext) -> None:
        raise RuntimeError("the model timed out")

    task = trail.submit("roadmap.content")
    trail.run_pending()
    failed = trail.get(task.id)
    assert failed.status is Status.FAILED
    assert failed.error == "RuntimeError: the model timed out"

    retried = trail.retry(task.id)

    assert (retried.status, retried.error, retried.completed_at) == (Status.QUEUED, None, None)
