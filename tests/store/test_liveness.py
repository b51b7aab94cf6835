"""``Store.heartbeat``, ``Store.reap_lost``, ``Store.promote_due`` and ``Store.next_due`` on both
databases."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from tasktrail import Status, Trail
from tasktrail.retries import JITTER
from tasktrail.store import Store, utcnow


def _register(trail: Trail, *, max_attempts: int = 1) -> None:
    @trail.task("liveness.noop", max_attempts=max_attempts, backoff=4.0)
    def noop(ctx: object) -> None:
        return None


def _store_at(trail: Trail, offset: float) -> Store:
    """The same database, seen from a clock ``offset`` seconds ahead."""
    return Store(trail.engine, clock=lambda: utcnow() + timedelta(seconds=offset))


def test_heartbeat_refreshes_only_the_runs_of_that_worker(trail: Trail) -> None:
    _register(trail)
    mine = trail.submit("liveness.noop")
    theirs = trail.submit("liveness.noop")
    queued = trail.submit("liveness.noop")
    assert trail.store.claim(worker="w1") is not None
    assert trail.store.claim(worker="w2") is not None
    later = _store_at(trail, 5)

    beats = later.heartbeat("w1", [mine.id, theirs.id, queued.id])

    assert set(beats) == {mine.id}
    assert beats[mine.id].attempt == 1
    assert beats[mine.id].cancel_requested_at is None
    assert trail.get(mine.id).heartbeat_at > trail.get(theirs.id).heartbeat_at  # type: ignore[operator]
    assert later.heartbeat("w1", []) == {}


def test_heartbeat_reports_a_cancel_request(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("liveness.noop")
    trail.store.claim(worker="w1")
    trail.cancel(task.id, reason="stop")

    beat = trail.store.heartbeat("w1", [task.id])[task.id]

    assert beat.cancel_requested_at == trail.get(task.id).cancel_requested_at
    assert beat.cancel_requested_at is not None


def test_reaper_reschedules_a_lost_run_with_attempts_left(trail: Trail) -> None:
    _register(trail, max_attempts=2)
    task = trail.submit("liveness.noop")
    trail.store.claim(worker="w1")

    assert _store_at(trail, 5).reap_lost(10, actor="reaper") == []
    reaped = _store_at(trail, 30).reap_lost(10, actor="reaper")

    assert [r.id for r in reaped] == [task.id]
    after = trail.get(task.id)
    assert after.status is Status.SCHEDULED
    assert after.worker is None
    assert after.heartbeat_at is None
    lose = trail.events(task.id)[-1]
    assert (lose.from_status, lose.to_status) == (Status.RUNNING, Status.SCHEDULED)
    assert lose.data["transition"] == "lose"
    assert lose.message is not None
    assert lose.message.startswith("worker lost: w1 sent no heartbeat")
    delay = lose.data["retry_in"]
    assert 4.0 * JITTER[0] <= delay <= 4.0 * JITTER[1]
    assert after.run_after is not None
    assert after.run_after - lose.created_at == timedelta(seconds=delay)  # one instant


def test_reaper_fails_a_lost_run_without_attempts_left(trail: Trail) -> None:
    _register(trail, max_attempts=1)
    task = trail.submit("liveness.noop")
    trail.store.claim(worker="w1")

    _store_at(trail, 30).reap_lost(10, actor="reaper")

    after = trail.get(task.id)
    assert after.status is Status.FAILED
    assert after.error == "worker lost"
    assert after.completed_at is not None


def test_a_run_that_keeps_beating_is_not_reaped(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("liveness.noop")
    trail.store.claim(worker="w1")
    _store_at(trail, 25).heartbeat("w1", [task.id])

    assert _store_at(trail, 30).reap_lost(10) == []
    assert trail.get(task.id).status is Status.RUNNING


def test_concurrent_reapers_take_each_lost_run_once(trail: Trail) -> None:
    _register(trail, max_attempts=2)
    ids = [trail.submit("liveness.noop").id for _ in range(20)]
    for _ in ids:
        trail.store.claim(worker="dead")
    reapers = [_store_at(trail, 60) for _ in range(4)]
    results: list[list[str]] = [[] for _ in reapers]
    start = threading.Barrier(len(reapers))

    def reap(index: int) -> None:
        start.wait()
        results[index] = [r.id for r in reapers[index].reap_lost(10, limit=7)]
        results[index] += [r.id for r in reapers[index].reap_lost(10, limit=100)]

    threads = [threading.Thread(target=reap, args=(i,)) for i in range(len(reapers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reaped = [task_id for result in results for task_id in result]
    assert sorted(reaped) == sorted(ids)
    for task_id in ids:
        loses = [e for e in trail.events(task_id) if (e.data or {}).get("transition") == "lose"]
        assert len(loses) == 1
        assert trail.get(task_id).status is Status.SCHEDULED


def test_next_due_is_the_earliest_scheduled_time(trail: Trail) -> None:
    _register(trail)
    assert trail.store.next_due() is None
    soon: datetime = utcnow() + timedelta(minutes=5)
    trail.submit("liveness.noop", run_after=soon + timedelta(minutes=5))
    trail.submit("liveness.noop", run_after=soon)
    trail.submit("liveness.noop")

    due = trail.store.next_due()

    assert due is not None
    assert due.tzinfo is not None
    assert abs((due - soon).total_seconds()) < 0.001


def test_promote_due_with_overdue_by_leaves_tasks_that_only_just_became_due(
    trail: Trail,
) -> None:
    _register(trail)
    now = utcnow()
    long_due = trail.submit("liveness.noop", run_after=now + timedelta(seconds=1))
    just_due = trail.submit("liveness.noop", run_after=now + timedelta(seconds=55))
    later = _store_at(trail, 60)

    promoted = later.promote_due(actor="reaper", overdue_by=10)

    assert [task.id for task in promoted] == [long_due.id]
    assert trail.get(long_due.id).status is Status.QUEUED
    assert trail.get(just_due.id).status is Status.SCHEDULED
    due = [e for e in trail.events(long_due.id) if e.to_status is Status.QUEUED][-1]
    assert (due.from_status, due.actor) == (Status.SCHEDULED, "reaper")
    assert [task.id for task in later.promote_due()] == [just_due.id]
