"""The embedded worker, in this process, on both databases."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import event

from tasktrail import DoNotRetry, EventRecord, Status, TaskContext, TaskRecord, Trail, Worker
from tasktrail.errors import InvalidInput
from tasktrail.records import Claimed
from tasktrail.retries import JITTER
from tasktrail.worker import POLL_WITH_LISTEN, RECHECK_DUE_EVERY

#: Threads that tests release: a gated task waits for its gate before it returns.
GATES: dict[str, threading.Event] = {}


def wait_for(condition: Callable[[], Any], *, timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def ended(trail: Trail, task_id: str) -> TaskRecord | None:
    task = trail.get(task_id)
    return task if task.status.is_terminal else None


def transitions(trail: Trail, task_id: str) -> list[EventRecord]:
    return [e for e in trail.events(task_id) if e.type == "transition"]


def new_gate() -> str:
    gate = uuid.uuid4().hex
    GATES[gate] = threading.Event()
    return gate


@pytest.fixture
def tasks(trail: Trail) -> Trail:
    """``trail`` with this module's task functions registered."""

    @trail.task("w.add")
    def add(ctx: TaskContext, a: int, b: int) -> int:
        ctx.progress(50, "adding")
        return a + b

    @trail.task("w.add_async")
    async def add_async(ctx: TaskContext, a: int, b: int) -> int:
        await ctx.progress_async(50, "adding")
        return a + b

    @trail.task("w.flaky", max_attempts=3, backoff=0.2)
    def flaky(ctx: TaskContext) -> dict[str, int]:
        if ctx.attempt < 3:
            raise ConnectionError(f"flaked on attempt {ctx.attempt}")
        return {"attempt": ctx.attempt}

    @trail.task("w.broken", max_attempts=2, backoff=0.05)
    def broken(ctx: TaskContext) -> None:
        raise ValueError("always broken")

    @trail.task("w.picky", max_attempts=3, backoff=0.05, retry_on=(ConnectionError,))
    def picky(ctx: TaskContext) -> None:
        raise ValueError("not worth another try")

    @trail.task("w.refuses", max_attempts=5, backoff=0.05)
    def refuses(ctx: TaskContext) -> None:
        raise DoNotRetry("bad input")

    @trail.task("w.cooperative")
    def cooperative(ctx: TaskContext) -> None:
        for percent in range(1000):
            ctx.progress(percent / 10, "looping")
            time.sleep(0.02)

    @trail.task("w.cooperative_async")
    async def cooperative_async(ctx: TaskContext) -> None:
        for percent in range(1000):
            await ctx.progress_async(percent / 10, "looping")
            await asyncio.sleep(0.02)

    @trail.task("w.gated")
    def gated(ctx: TaskContext, gate: str) -> dict[str, bool]:
        ctx.progress(10, "waiting at the gate")
        GATES[gate].wait(timeout=60)
        return {"late": True}

    @trail.task("w.sleeps_async")
    async def sleeps_async(ctx: TaskContext) -> None:
        await ctx.progress_async(10, "sleeping")
        await asyncio.sleep(60)

    return trail


@pytest.fixture
def start(tasks: Trail) -> Iterator[Callable[..., Worker]]:
    """Start a worker on ``tasks`` (short heartbeats); every one is stopped afterwards."""
    started: list[Worker] = []

    def start_worker(**options: Any) -> Worker:
        options = {"heartbeat_interval": 0.1, "heartbeat_timeout": 2.0, **options}
        worker = Worker(tasks, **options)
        worker.start()
        started.append(worker)
        return worker

    yield start_worker
    for gate in GATES.values():
        gate.set()
    for worker in started:
        worker.stop(timeout=5)


def test_sync_and_async_tasks_run_to_completion(tasks: Trail, start: Callable[..., Worker]) -> None:
    start(concurrency=3)
    ids = [tasks.submit("w.add", {"a": i, "b": 1}).id for i in range(10)]
    ids += [tasks.submit("w.add_async", {"a": i, "b": 2}).id for i in range(10)]

    results = [wait_for(partial(ended, tasks, i), what=i) for i in ids]

    assert [r.status for r in results] == [Status.COMPLETED] * 20
    assert [r.result for r in results] == [i + 1 for i in range(10)] + [i + 2 for i in range(10)]
    assert all(r.attempts == 1 and r.progress == 100 for r in results)


def test_a_task_submitted_in_process_starts_without_waiting_for_a_poll(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    start(poll_interval=60)
    first = tasks.submit("w.add", {"a": 1, "b": 1})
    wait_for(lambda: ended(tasks, first.id), what="the first task")
    # The worker is now idle, waiting up to a minute for a poll: only a wake-up helps.
    second = tasks.submit("w.add", {"a": 2, "b": 2})

    assert wait_for(lambda: ended(tasks, second.id), timeout=10).result == 4


def test_a_task_queued_by_another_process_is_found(
    database_url: str, tasks: Trail, start: Callable[..., Worker]
) -> None:
    # A second Trail has its own executor: like another process, it cannot wake us directly.
    other = Trail(database_url)
    other.registry = tasks.registry
    # No polling: only NOTIFY (PostgreSQL) or the commit watcher (SQLite) finds it in time.
    start(poll_interval=60)
    try:
        first = other.submit("w.add", {"a": 1, "b": 1})
        wait_for(lambda: ended(tasks, first.id), timeout=10, what="the first task")
        second = other.submit("w.add", {"a": 2, "b": 2})
        assert wait_for(lambda: ended(tasks, second.id), timeout=10).result == 4
    finally:
        other.close()


def _claims_by_thread(
    tasks: Trail, monkeypatch: pytest.MonkeyPatch, *, fail_in: str | None = None
) -> list[tuple[str, Claimed | None]]:
    """Every ``claim_next`` of ``tasks``' store from now on, with the thread that made it;
    with ``fail_in``, the first one made in that thread raises instead."""
    claims: list[tuple[str, Claimed | None]] = []
    claim = tasks.store.claim_next

    def recorded(**options: Any) -> Claimed | None:
        thread = threading.current_thread().name
        if thread == fail_in and not any(name == fail_in for name, _ in claims):
            claims.append((thread, None))
            raise ConnectionError("the database went away for a moment")
        claims.append((thread, claimed := claim(**options)))
        return claimed

    monkeypatch.setattr(tasks.store, "claim_next", recorded)
    return claims


def test_a_task_heard_of_is_claimed_by_the_thread_that_heard_it(
    database_url: str, tasks: Trail, start: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL names the queued task's queue in its NOTIFY: the listener's thread claims
    it, with no hand-off to the dispatch thread, and nothing else looks for it. Its claims
    share one connection, taken from the pool once."""
    if tasks.engine.dialect.name != "postgresql":
        pytest.skip("a SQLite file's commit watcher hears commits, not queued tasks")
    other = Trail(database_url)  # another process, as far as waking us goes
    other.registry = tasks.registry
    claims = _claims_by_thread(tasks, monkeypatch)
    start(concurrency=2, poll_interval=60)
    submitted = []
    checkouts: list[str] = []
    try:
        wait_for(lambda: claims, what="the look at start-up")
        time.sleep(0.1)  # the look the listener asks for once it is listening, too
        event.listen(
            tasks.engine.pool,
            "checkout",
            lambda *_: checkouts.append(threading.current_thread().name),
        )
        for n in range(3):
            submitted.append(task := other.submit("w.add", {"a": n, "b": 1}))
            assert wait_for(lambda: ended(tasks, task.id), what=task.id).result == n + 1
            time.sleep(0.05)  # idle again
    finally:
        other.close()

    takers = {c.task.id: thread for thread, c in claims if c is not None}
    assert [takers[task.id] for task in submitted] == ["tasktrail-listen"] * 3
    first = next(i for i, (_, c) in enumerate(claims) if c is not None)
    assert [thread for thread, _ in claims[first:]] == ["tasktrail-listen"] * 3  # no other look
    assert checkouts.count("tasktrail-listen") == 1


def test_a_claim_that_fails_in_the_listener_leaves_the_task_to_the_dispatch_thread(
    database_url: str, tasks: Trail, start: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    if tasks.engine.dialect.name != "postgresql":
        pytest.skip("a SQLite file's commit watcher hears commits, not queued tasks")
    other = Trail(database_url)
    other.registry = tasks.registry
    claims = _claims_by_thread(tasks, monkeypatch, fail_in="tasktrail-listen")
    start(concurrency=2, poll_interval=60)
    try:
        first = other.submit("w.add", {"a": 1, "b": 1})
        assert wait_for(lambda: ended(tasks, first.id), what="the first task").result == 2
        second = other.submit("w.add", {"a": 2, "b": 2})  # the listener is still listening
        assert wait_for(lambda: ended(tasks, second.id), what="the second task").result == 4
    finally:
        other.close()

    claimed_by = {c.task.id: thread for thread, c in claims if c is not None}
    assert claimed_by[first.id] == "tasktrail-dispatch"
    assert claimed_by[second.id] == "tasktrail-listen"


def test_a_claim_that_lands_after_stop_put_the_runs_back_is_put_back_too(
    database_url: str, tasks: Trail, start: Callable[..., Worker]
) -> None:
    """The database stalls in the middle of the listener's claim, past everything ``stop``
    waits for. When the claim lands at last, the stopped worker queues the task again
    instead of leaving it ``running`` until another worker's reaper takes it back."""
    if tasks.engine.dialect.name != "postgresql":
        pytest.skip("a SQLite file's commit watcher hears commits, not queued tasks")
    stall = 4242  # an advisory lock the test holds while the claim waits for it
    with tasks.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.to_status = 'running' THEN PERFORM pg_advisory_xact_lock({stall});"
            " END IF; RETURN NEW; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER stall BEFORE INSERT ON tasktrail_events"
            " FOR EACH ROW EXECUTE FUNCTION stall()"
        )
    other = Trail(database_url)
    other.registry = tasks.registry
    try:
        with other.engine.connect() as holder:
            holder.exec_driver_sql(f"SELECT pg_advisory_lock({stall})")
            worker = start(concurrency=1, poll_interval=60)
            time.sleep(0.2)  # the look at start-up, and the listener listening
            task = other.submit("w.add", {"a": 1, "b": 1})
            wait_for(
                lambda: holder.exec_driver_sql(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).scalar(),
                what="the claim to wait for the stalled database",
            )
            worker.stop(timeout=0.1)
            assert worker.running() == []
            holder.exec_driver_sql(f"SELECT pg_advisory_unlock({stall})")
            holder.commit()
        back = wait_for(
            lambda: [e for e in transitions(tasks, task.id) if e.to_status is Status.QUEUED][1:],
            what="the late claim to be put back",
        )
    finally:
        other.close()

    assert [(e.from_status, e.to_status) for e in transitions(tasks, task.id)] == [
        (None, Status.QUEUED),
        (Status.QUEUED, Status.RUNNING),
        (Status.RUNNING, Status.QUEUED),
    ]
    assert back[0].message is not None and "shut down while claiming" in back[0].message
    assert tasks.get(task.id).status is Status.QUEUED


def test_an_idle_worker_looks_at_the_queue_once_per_look_it_needs(
    tasks: Trail, start: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    claims: list[Claimed | None] = []
    claim = tasks.store.claim_next

    def counted(**options: Any) -> Claimed | None:
        claims.append(claimed := claim(**options))
        return claimed

    monkeypatch.setattr(tasks.store, "claim_next", counted)
    # Only this process's submits wake it: no other process's commits to hear.
    monkeypatch.setattr("tasktrail.worker.listen_for_queued", lambda *_, **__: None)
    start(concurrency=2, poll_interval=60)
    wait_for(lambda: claims, what="the look at start-up")
    claims.clear()
    for n in range(5):
        task = tasks.submit("w.add", {"a": n, "b": 1})
        wait_for(lambda: ended(tasks, task.id), what=task.id)  # noqa: B023
        time.sleep(0.05)  # idle again

    # Per task, the dispatch thread claims it, and the claim said nothing else was queued:
    # no second look for the other slot. The end of the run looked at the queue too (in its
    # own write), so the slot it frees needs no look either.
    assert [c is not None and not c.more_queued for c in claims] == [True] * 5


def test_a_claim_that_saw_more_queued_fills_the_other_slot_at_once(
    tasks: Trail, start: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    gates = [f"more-{n}" for n in range(2)]
    GATES.update({gate: threading.Event() for gate in gates})
    waiting = [tasks.submit("w.gated", {"gate": gate}) for gate in gates]
    # Nothing wakes the worker after start-up: only its own look fills both slots.
    monkeypatch.setattr("tasktrail.worker.listen_for_queued", lambda *_, **__: None)
    start(concurrency=2, poll_interval=60)
    try:
        for task in waiting:
            wait_for(lambda: tasks.get(task.id).progress > 0, what=task.id)  # noqa: B023
    finally:
        for gate in gates:
            GATES[gate].set()


def test_a_task_queued_while_a_run_ends_is_not_left_for_the_next_poll(
    tasks: Trail, start: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    complete_then_claim = tasks.store.complete_then_claim
    late: list[TaskRecord] = []

    def then_queue_another(*args: Any, **options: Any) -> Any:
        ended = complete_then_claim(*args, **options)  # found nothing to claim
        if not late:  # queued before the run's slot is free: the dispatch thread finds none
            late.append(tasks.submit("w.add", {"a": 2, "b": 2}))
            time.sleep(0.3)  # for the dispatch thread to look, find every slot taken, wait
        return ended

    monkeypatch.setattr(tasks.store, "complete_then_claim", then_queue_another)
    monkeypatch.setattr("tasktrail.worker.listen_for_queued", lambda *_, **__: None)
    start(concurrency=1, poll_interval=60)
    tasks.submit("w.add", {"a": 1, "b": 1})

    wait_for(lambda: late, what="the late submit")
    assert wait_for(lambda: ended(tasks, late[0].id), timeout=10).result == 4


def test_polling_is_only_a_safety_net_where_other_processes_can_be_heard(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    # PostgreSQL LISTEN, or a SQLite file's commit watcher: both hear other processes.
    assert start().poll_interval == POLL_WITH_LISTEN


def test_a_storm_of_hints_rereads_due_times_at_most_every_tenth_of_a_second(
    database_url: str, tasks: Trail, start: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Trail(database_url)  # another process, as far as wake-ups go
    other.registry = tasks.registry
    reads: list[float] = []
    next_due = tasks.store.next_due

    def counted() -> datetime | None:
        reads.append(time.monotonic())
        return next_due()

    monkeypatch.setattr(tasks.store, "next_due", counted)
    start(poll_interval=60)
    wait_for(lambda: reads, what="the first look at due times")
    later = other.store.clock() + timedelta(hours=1)
    try:
        began = time.monotonic()
        reads.clear()
        for _ in range(40):
            # Each is a hint that due times changed: NOTIFY on PostgreSQL, a commit on SQLite.
            other.submit("w.add", {"a": 1, "b": 1}, run_after=later)
            last_hint = time.monotonic()  # committed: a read that starts later sees it
            time.sleep(0.01)
        time.sleep(3 * RECHECK_DUE_EVERY)
    finally:
        other.close()

    assert len(reads) <= (last_hint - began) / RECHECK_DUE_EVERY + 2
    assert reads and reads[-1] > last_hint  # the last hint was not dropped, only deferred


def ran_after_due(trail: Trail, task_id: str, due: datetime) -> float:
    """Seconds from ``due`` to the task's first claim (its first ``running`` transition)."""
    claim = next(e for e in transitions(trail, task_id) if e.to_status is Status.RUNNING)
    return (claim.created_at - due).total_seconds()


def test_a_task_scheduled_in_process_runs_when_due_not_at_the_next_poll(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    start(poll_interval=60)
    first = tasks.submit("w.add", {"a": 1, "b": 1})
    wait_for(lambda: ended(tasks, first.id), what="the first task")
    # The worker is idle with nothing scheduled: its next look is a minute away.
    due = tasks.store.clock() + timedelta(seconds=0.3)
    scheduled = tasks.submit("w.add", {"a": 2, "b": 2}, run_after=due)
    assert scheduled.status is Status.SCHEDULED

    assert wait_for(lambda: ended(tasks, scheduled.id), timeout=10).result == 4
    assert 0 <= ran_after_due(tasks, scheduled.id, due) <= 1.5


def test_a_task_scheduled_by_another_process_runs_when_due(
    database_url: str, tasks: Trail, start: Callable[..., Worker]
) -> None:
    other = Trail(database_url)  # its own executor: it cannot wake this worker directly
    other.registry = tasks.registry
    # No polling: only NOTIFY (PostgreSQL) or the commit watcher (SQLite) tells it in time.
    start(poll_interval=60)
    try:
        first = other.submit("w.add", {"a": 1, "b": 1})
        wait_for(lambda: ended(tasks, first.id), timeout=10, what="the first task")
        due = other.store.clock() + timedelta(seconds=0.3)
        scheduled = other.submit("w.add", {"a": 2, "b": 2}, run_after=due)
        assert scheduled.status is Status.SCHEDULED

        assert wait_for(lambda: ended(tasks, scheduled.id), timeout=10).result == 4
        assert 0 <= ran_after_due(tasks, scheduled.id, due) <= 1.5
    finally:
        other.close()


def test_claims_take_the_highest_priority_first_then_the_oldest(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    submitted = [
        tasks.submit("w.add", {"a": n, "b": 0}, priority=priority, run=False)
        for n, priority in enumerate([0, 5, 0, 9, 5])
    ]
    for task in submitted:
        tasks.run(task.id)
    start(concurrency=1)  # one at a time, so the order of claims is the order of runs

    done = [wait_for(partial(ended, tasks, t.id), what=t.id) for t in submitted]

    by_claim = sorted(done, key=lambda t: ran_after_due(tasks, t.id, done[0].created_at))
    assert [t.result for t in by_claim] == [3, 1, 4, 0, 2]


def test_a_flaky_task_is_retried_with_backoff_until_it_succeeds(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    # A poll a minute apart: each attempt can start in time only if the worker wakes up
    # when the backoff ends.
    start(poll_interval=60)
    task = tasks.submit("w.flaky")

    done = wait_for(lambda: ended(tasks, task.id))

    assert done.status is Status.COMPLETED
    assert done.attempts == 3
    assert done.result == {"attempt": 3}
    history = transitions(tasks, task.id)
    runs = [e for e in history if e.to_status is Status.RUNNING]
    backoffs = [e for e in history if e.data["transition"] == "back_off"]
    assert len(runs) == 3
    assert [(e.from_status, e.to_status) for e in backoffs] == [
        (Status.RUNNING, Status.SCHEDULED)
    ] * 2
    for attempt, (backoff, run, next_run) in enumerate(
        zip(backoffs, runs[:-1], runs[1:], strict=True), start=1
    ):
        delay = backoff.data["retry_in"]
        expected = 0.2 * 2 ** (attempt - 1)
        assert expected * JITTER[0] <= delay <= expected * JITTER[1]
        assert backoff.message == (
            f"ConnectionError: flaked on attempt {attempt}; attempt {attempt + 1} in {delay:.2f}s"
        )
        # The next attempt starts once the backoff has passed, and soon after. run_after
        # is read from the clock a moment before the event's time (one locked UPDATE
        # later), hence the epsilon; counted from the previous claim, none is needed.
        gap = (next_run.created_at - backoff.created_at).total_seconds()
        assert delay - 0.1 <= gap <= delay + 1.0
        assert (next_run.created_at - run.created_at).total_seconds() >= delay
        assert run.created_at < backoff.created_at < next_run.created_at


def test_the_last_failure_fails_the_task(tasks: Trail, start: Callable[..., Worker]) -> None:
    start()
    broken = tasks.submit("w.broken")
    refuses = tasks.submit("w.refuses")

    failed = wait_for(lambda: ended(tasks, broken.id))
    refused = wait_for(lambda: ended(tasks, refuses.id))

    assert (failed.status, failed.attempts, failed.error) == (
        Status.FAILED,
        2,
        "ValueError: always broken",
    )
    assert (refused.status, refused.attempts) == (Status.FAILED, 1)
    assert refused.error == "DoNotRetry: bad input"


def test_an_error_not_in_retry_on_fails_at_once_with_attempts_left(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    start()
    task = tasks.submit("w.picky")

    failed = wait_for(lambda: ended(tasks, task.id))

    assert (failed.status, failed.attempts, failed.max_attempts) == (Status.FAILED, 1, 3)
    assert failed.error == "ValueError: not worth another try"
    moves = [e.data["transition"] for e in transitions(tasks, task.id)]
    assert moves == ["submit", "claim", "fail"]


def test_a_backoff_given_at_submit_overrides_the_tasks(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    start()
    task = tasks.submit("w.broken", backoff=0.5)  # the task's own backoff is 0.05

    wait_for(lambda: ended(tasks, task.id))

    (backoff,) = [e for e in transitions(tasks, task.id) if e.data["transition"] == "back_off"]
    assert 0.5 * JITTER[0] <= backoff.data["retry_in"] <= 0.5 * JITTER[1]


def test_failure_events_carry_the_error_type_and_traceback(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    start()
    task = tasks.submit("w.broken")

    wait_for(lambda: ended(tasks, task.id))

    failures = [
        e for e in transitions(tasks, task.id) if e.data["transition"] in ("back_off", "fail")
    ]
    assert [e.data["transition"] for e in failures] == ["back_off", "fail"]
    for failure in failures:
        assert failure.data["error_type"] == "builtins.ValueError"
        trace = failure.data["traceback"]
        assert trace.startswith("Traceback (most recent call last):")
        assert ", in broken\n" in trace  # the function that raised
        assert trace.rstrip().endswith("ValueError: always broken")


@pytest.mark.parametrize("name", ["w.cooperative", "w.cooperative_async"])
def test_a_running_task_that_checks_stops_when_cancelled(
    tasks: Trail, start: Callable[..., Worker], name: str
) -> None:
    worker = start(cancel_grace=5.0)
    task = tasks.submit(name)
    wait_for(lambda: tasks.get(task.id).progress > 0, what="progress")

    tasks.cancel(task.id, reason="changed my mind")
    cancelled = wait_for(lambda: ended(tasks, task.id))

    assert cancelled.status is Status.CANCELLED
    events = tasks.events(task.id)
    asked = next(e for e in events if e.type == "cancel_requested")
    last = transitions(tasks, task.id)[-1]
    assert last.message == "cancelled while running"  # acknowledged, not forced
    assert (last.created_at - asked.created_at).total_seconds() < worker.cancel_grace
    wait_for(lambda: not worker.running(), what="the worker to be free")


def forced_after(trail: Trail, task_id: str) -> float:
    """Seconds from the cancel request to the task's last transition."""
    asked = next(e for e in trail.events(task_id) if e.type == "cancel_requested")
    return (transitions(trail, task_id)[-1].created_at - asked.created_at).total_seconds()


#: A heartbeat interval shorter than the grace but long enough that forcing at the first
#: beat after the grace would usually miss the deadline by more than ``FORCE_SLACK``.
FORCED = {"cancel_grace": 1.2, "heartbeat_interval": 1.0, "heartbeat_timeout": 5.0}
FORCE_SLACK = 0.4


def test_a_sync_task_that_ignores_cancel_is_forced_and_its_late_result_discarded(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    worker = start(**FORCED)
    gate = new_gate()
    task = tasks.submit("w.gated", {"gate": gate})
    wait_for(lambda: tasks.get(task.id).progress > 0, what="progress")

    tasks.cancel(task.id)
    cancelled = wait_for(lambda: ended(tasks, task.id))

    assert cancelled.status is Status.CANCELLED
    # Forced when the grace ends, not at some later heartbeat.
    grace = worker.cancel_grace
    assert grace - 0.05 <= forced_after(tasks, task.id) <= grace + FORCE_SLACK
    forced = transitions(tasks, task.id)[-1]
    assert forced.message is not None
    assert forced.message.startswith("cancel forced: run 1")
    assert forced.data["forced"] is True
    # The function is still running: its thread is busy until it returns.
    assert [t.id for t in worker.running()] == [task.id]

    GATES[gate].set()
    discarded = wait_for(
        lambda: [e for e in tasks.events(task.id) if e.type == "discarded"], what="discarded"
    )

    assert discarded[0].data == {"attempt": 1, "result": {"late": True}}
    after = tasks.get(task.id)
    assert (after.status, after.result) == (Status.CANCELLED, None)
    wait_for(lambda: not worker.running(), what="the worker to be free")


def test_an_async_task_that_ignores_cancel_is_forced_and_stopped(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    worker = start(**FORCED)
    task = tasks.submit("w.sleeps_async")
    wait_for(lambda: tasks.get(task.id).progress > 0, what="progress")

    tasks.cancel(task.id)
    cancelled = wait_for(lambda: ended(tasks, task.id))

    assert cancelled.status is Status.CANCELLED
    assert transitions(tasks, task.id)[-1].data["forced"] is True
    grace = worker.cancel_grace
    assert grace - 0.05 <= forced_after(tasks, task.id) <= grace + FORCE_SLACK
    # The coroutine itself was cancelled too, so its slot is free again.
    wait_for(lambda: not worker.running(), what="the coroutine to be cancelled")


def test_stop_waits_for_running_tasks_then_requeues_the_rest(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    worker = start(concurrency=2)
    gate = new_gate()
    stuck = tasks.submit("w.gated", {"gate": gate})
    sleeping = tasks.submit("w.sleeps_async")
    wait_for(lambda: tasks.get(stuck.id).progress > 0, what="progress")
    wait_for(lambda: tasks.get(sleeping.id).progress > 0, what="async progress")
    waiting = tasks.submit("w.gated", {"gate": gate}, run=False)

    worker.stop(timeout=0.2)

    for task_id in (stuck.id, sleeping.id):
        assert tasks.get(task_id).status is Status.QUEUED
        requeue = transitions(tasks, task_id)[-1]
        assert requeue.data["transition"] == "requeue"
        assert requeue.message is not None
        assert "shut down" in requeue.message
    # The coroutine was cancelled; the thread runs until its function returns.
    assert [t.id for t in worker.running()] == [stuck.id]
    tasks.cancel(sleeping.id)
    GATES[gate].set()
    wait_for(lambda: [e for e in tasks.events(stuck.id) if e.type == "discarded"])
    assert tasks.get(stuck.id).status is Status.QUEUED
    wait_for(lambda: not worker.running(), what="the thread to return")

    tasks.run(waiting.id)
    restarted = start(concurrency=2)
    assert wait_for(lambda: ended(tasks, stuck.id)).status is Status.COMPLETED
    assert wait_for(lambda: ended(tasks, waiting.id)).status is Status.COMPLETED
    assert tasks.get(stuck.id).attempts == 2
    restarted.stop()


def test_stop_lets_tasks_that_finish_in_time_complete(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    worker = start()
    gate = new_gate()
    task = tasks.submit("w.gated", {"gate": gate})
    wait_for(lambda: tasks.get(task.id).progress > 0, what="progress")
    threading.Timer(0.2, GATES[gate].set).start()

    worker.stop(timeout=10)

    assert tasks.get(task.id).status is Status.COMPLETED


def test_worker_settings_are_checked(tasks: Trail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKTRAIL_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("TASKTRAIL_HEARTBEAT_TIMEOUT", "9")
    assert (Worker(tasks).heartbeat_interval, Worker(tasks).heartbeat_timeout) == (2.0, 9.0)
    assert Worker(tasks, heartbeat_interval=1).heartbeat_interval == 1.0
    with pytest.raises(InvalidInput, match="must be longer"):
        Worker(tasks, heartbeat_interval=10)
    monkeypatch.setenv("TASKTRAIL_HEARTBEAT_INTERVAL", "soon")
    with pytest.raises(InvalidInput, match="TASKTRAIL_HEARTBEAT_INTERVAL"):
        Worker(tasks)
    with pytest.raises(InvalidInput, match="concurrency"):
        Worker(tasks, concurrency=0, heartbeat_interval=1)
    with pytest.raises(InvalidInput, match="queues"):
        Worker(tasks, queues="default", heartbeat_interval=1)


def test_an_idle_worker_barely_touches_the_database(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    worker = start(heartbeat_interval=1.0, heartbeat_timeout=10.0)
    time.sleep(0.5)  # past start-up
    event.listen(tasks.engine, "before_cursor_execute", count)
    try:
        time.sleep(2.0)
    finally:
        event.remove(tasks.engine, "before_cursor_execute", count)

    # Polls (SQLite: every 0.5 s; PostgreSQL listens instead) and two reaper passes: a
    # few dozen statements at most, where a busy loop would run thousands.
    looks = 2.0 / worker.poll_interval + 2
    assert len(statements) <= 8 * looks, statements


def test_tasks_this_process_cannot_run_are_left_for_another(
    database_url: str, tasks: Trail, start: Callable[..., Worker]
) -> None:
    other = Trail(database_url)

    @other.task("w.elsewhere")
    def elsewhere(ctx: TaskContext) -> None:
        return None

    try:
        start()
        foreign = other.submit("w.elsewhere")
        known = tasks.submit("w.add", {"a": 1, "b": 1})
        wait_for(lambda: ended(tasks, known.id), what="the known task")

        assert tasks.get(foreign.id).status is Status.QUEUED
        assert other.run_pending() == 1
        assert tasks.get(foreign.id).status is Status.COMPLETED
    finally:
        other.close()


def test_one_heartbeat_statement_keeps_all_running_tasks_alive(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    beats: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE tasktrail_tasks SET heartbeat_at"):
            beats.append(statement)

    # A timeout shorter than the tasks take: only heartbeats keep the reaper away. (At 0.5 s
    # a stall of the whole machine during the full suite once let the reaper in.)
    start(concurrency=3, heartbeat_interval=0.1, heartbeat_timeout=1.0)
    gate = new_gate()
    ids = [tasks.submit("w.gated", {"gate": gate}).id for _ in range(3)]
    wait_for(lambda: all(tasks.get(i).progress > 0 for i in ids), what="three running tasks")
    event.listen(tasks.engine, "before_cursor_execute", count)
    try:
        time.sleep(2.0)
    finally:
        event.remove(tasks.engine, "before_cursor_execute", count)
    GATES[gate].set()
    done = [wait_for(partial(ended, tasks, i), what=i) for i in ids]

    # One statement per beat for all three tasks: about 20 beats, not 60 statements.
    assert 3 <= len(beats) <= 30
    assert [(t.status, t.attempts) for t in done] == [(Status.COMPLETED, 1)] * 3
    for task_id in ids:
        assert not [e for e in tasks.events(task_id) if (e.data or {}).get("transition") == "lose"]


def test_a_worker_takes_only_from_its_queues(tasks: Trail, start: Callable[..., Worker]) -> None:
    start(queues=["reports"])
    elsewhere = tasks.submit("w.add", {"a": 1, "b": 1})
    mine = tasks.submit("w.add", {"a": 2, "b": 2}, queue="reports")

    assert wait_for(lambda: ended(tasks, mine.id)).result == 4
    assert tasks.get(elsewhere.id).status is Status.QUEUED


def test_a_busy_worker_never_holds_more_than_its_concurrency(
    tasks: Trail, start: Callable[..., Worker]
) -> None:
    # A thread takes its next task with the end of the last (one write), the dispatch
    # thread fills free slots: between them, never more tasks running in the database
    # than `concurrency`, not even claimed ones waiting for a thread.
    seen: list[int] = []

    @tasks.task("w.counted")
    def counted(ctx: TaskContext) -> None:
        seen.append(len(tasks.list_tasks(status=Status.RUNNING).items))
        time.sleep(0.005)

    submitted = [tasks.submit("w.counted") for _ in range(20)]
    submitted += [tasks.submit("w.add_async", params={"a": n, "b": 1}) for n in range(5)]
    submitted += [tasks.submit("w.counted") for _ in range(10)]
    worker = start(concurrency=2)

    for task in submitted:
        assert wait_for(partial(ended, tasks, task.id)).status is Status.COMPLETED
    assert len(seen) == 30 and max(seen) <= 2
    assert worker.running() == []
    claims = [e for task in submitted for e in transitions(tasks, task.id)
              if e.to_status is Status.RUNNING]  # fmt: skip
    assert len(claims) == len(submitted) and {e.actor for e in claims} == {worker.name}
