"""The facade's calls, on each database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tasktrail import (
    InvalidInput,
    InvalidTransition,
    Link,
    Status,
    TaskContext,
    TaskNotFound,
    Trail,
)


@pytest.fixture
def noop(trail: Trail) -> Trail:
    @trail.task("noop")
    def noop(ctx: TaskContext, n: int = 0) -> dict[str, int]:
        return {"n": n}

    return trail


def test_submit_queues_and_records_the_creation_event(noop: Trail) -> None:
    task = noop.submit("noop", {"n": 1}, description="one")

    assert (task.status, task.attempts, task.description) == (Status.QUEUED, 0, "one")
    assert task.queued_at is not None and task.created_at.tzinfo is not None
    [created] = noop.events(task.id)
    assert (created.type, created.from_status, created.to_status) == (
        "transition",
        None,
        Status.QUEUED,
    )


def test_run_false_waits_in_created_until_run(noop: Trail) -> None:
    task = noop.submit("noop", run=False)
    assert noop.run_pending() == 0
    assert noop.get(task.id).status is Status.CREATED

    assert noop.run(task.id).status is Status.QUEUED
    assert noop.run_pending() == 1
    assert noop.get(task.id).result == {"n": 0}
    with pytest.raises(InvalidTransition, match="completed"):
        noop.run(task.id)


def test_run_after_in_the_future_is_scheduled_until_due(noop: Trail) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    task = noop.submit("noop", run_after=later)

    assert task.status is Status.SCHEDULED
    assert task.run_after == later
    assert noop.run_pending() == 0


def test_a_due_scheduled_task_is_promoted_and_run(noop: Trail) -> None:
    task = noop.submit("noop", run_after=datetime.now(UTC) + timedelta(milliseconds=1))
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while noop.run_pending() == 0 and datetime.now(UTC) < deadline:
        pass
    transitions = [(e.from_status, e.to_status) for e in noop.events(task.id) if e.to_status]
    assert transitions == [
        (None, Status.SCHEDULED),
        (Status.SCHEDULED, Status.QUEUED),
        (Status.QUEUED, Status.RUNNING),
        (Status.RUNNING, Status.COMPLETED),
    ]


def test_dedupe_key_returns_the_existing_task_and_writes_nothing(noop: Trail) -> None:
    first = noop.submit("noop", {"n": 1}, dedupe_key="daily-2026-11-23")
    again = noop.submit("noop", {"n": 2}, dedupe_key="daily-2026-11-23")

    assert again.id == first.id
    assert again.deduplicated and not first.deduplicated
    assert again.params == {"n": 1}
    assert len(noop.events(first.id)) == 1
    assert len(noop.list_tasks().items) == 1


def test_cancel_of_a_waiting_task_is_immediate(noop: Trail) -> None:
    task = noop.submit("noop")
    cancelled = noop.cancel(task.id, reason="changed my mind")

    assert cancelled.status is Status.CANCELLED
    assert cancelled.completed_at is not None and cancelled.error is None
    assert noop.events(task.id)[-1].message == "changed my mind"
    assert noop.run_pending() == 0


def test_cancel_of_a_finished_task_names_its_status(noop: Trail) -> None:
    task = noop.submit("noop")
    noop.run_pending()
    with pytest.raises(InvalidTransition, match="already completed") as refused:
        noop.cancel(task.id)
    assert refused.value.current == "completed"


def test_retry_refuses_active_and_completed_tasks_unless_forced(noop: Trail) -> None:
    task = noop.submit("noop")
    with pytest.raises(InvalidTransition, match="it is queued"):
        noop.retry(task.id)
    noop.run_pending()
    with pytest.raises(InvalidTransition, match="force"):
        noop.retry(task.id)

    again = noop.retry(task.id, force=True)
    assert (again.status, again.result, again.completed_at) == (Status.QUEUED, None, None)
    noop.run_pending()
    assert noop.get(task.id).attempts == 2


def test_unknown_task_ids_raise_task_not_found(noop: Trail) -> None:
    for call in (noop.get, noop.run, noop.retry, noop.cancel):
        with pytest.raises(TaskNotFound, match="nope"):
            call("nope")


def test_list_tasks_pages_newest_first_with_filters(noop: Trail) -> None:
    ids = [noop.submit("noop", {"n": n}, links=[Link("batch", str(n % 2))]).id for n in range(7)]
    noop.cancel(ids[0])

    seen: list[str] = []
    cursor = None
    while True:
        page = noop.list_tasks(limit=3, cursor=cursor)
        seen += [t.id for t in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]
    assert [t.id for t in noop.list_tasks(status="cancelled").items] == [ids[0]]
    odd = noop.list_tasks(resource=("batch", "1")).items
    assert [t.id for t in odd] == [ids[5], ids[3], ids[1]]
    assert noop.list_tasks(name="other").items == ()


def test_events_after_a_cursor_continue_where_the_reader_stopped(noop: Trail) -> None:
    task = noop.submit("noop")
    first = noop.events(task.id)
    noop.run_pending()
    rest = noop.events(task.id, after=first[-1].id)

    assert [e.to_status for e in rest] == [Status.RUNNING, Status.COMPLETED]
    assert all(e.id > first[-1].id for e in rest)
    assert [e.id for e in noop.events(task.id)] == [e.id for e in first + rest]


def test_async_functions_and_async_twins(trail: Trail) -> None:
    @trail.task("async.double")
    async def double(ctx: TaskContext, n: int) -> int:
        await ctx.progress_async(50, "halfway")
        await asyncio.sleep(0)
        return n * 2

    async def scenario() -> None:
        task = await trail.submit_async("async.double", {"n": 21}, links=[Link("x", "1")])
        assert await trail.run_pending_async() == 1
        done = await trail.get_async(task.id)
        assert (done.status, done.result) == (Status.COMPLETED, 42)
        assert [t.id for t in await trail.tasks_for_async("x", "1")] == [task.id]
        assert (await trail.retry_async(task.id, force=True)).status is Status.QUEUED
        assert (await trail.cancel_async(task.id)).status is Status.CANCELLED
        events = await trail.events_async(task.id)
        assert events[-1].to_status is Status.CANCELLED
        assert (await trail.list_tasks_async(status="cancelled")).items[0].id == task.id

    asyncio.run(scenario())
    assert Trail.run_pending(trail) == 0  # the sync path also works on the same trail


def test_tasks_for_limit_returns_the_newest_first(noop: Trail) -> None:
    trail = noop
    ids = [trail.submit("noop", links=[Link("x", "1")], run=False).id for _ in range(5)]
    newest = trail.tasks_for("x", "1", limit=2)
    assert [t.id for t in newest] == ids[::-1][:2]
    assert all(len(t.links) == 1 for t in newest)
    assert [t.id for t in trail.tasks_for("x", "1")] == ids[::-1]
    with pytest.raises(InvalidInput):
        trail.tasks_for("x", "1", limit=0)


def test_run_async_queues_a_created_task_and_link_async_adds_links(noop: Trail) -> None:
    async def scenario() -> None:
        task = await noop.submit_async("noop", {"n": 3}, run=False, links=[Link("x", "1")])
        assert task.status is Status.CREATED
        queued = await noop.run_async(task.id, actor="tester")
        assert queued.status is Status.QUEUED
        assert (await noop.get_async(task.id)).status is Status.QUEUED
        with pytest.raises(InvalidTransition, match="queued"):
            await noop.run_async(task.id)

        linked = await noop.link_async(task.id, Link("y", "2", role="extra"), Link("x", "1"))
        assert {(k.resource_type, k.resource_id, k.role) for k in linked.links} == {
            ("x", "1", None),
            ("y", "2", "extra"),
        }
        found = await noop.tasks_for_async("y", "2")
        assert [(t.id, t.role) for t in found] == [(task.id, "extra")]
        with pytest.raises(InvalidInput, match=r"tasktrail\.Link"):
            await noop.link_async(task.id, ("z", "3"))  # type: ignore[arg-type]
        assert await noop.run_pending_async() == 1

    asyncio.run(scenario())
    assert noop.get(noop.list_tasks().items[0].id).result == {"n": 3}


def test_items_async_in_an_async_task(trail: Trail) -> None:
    runs: list[list[str]] = []

    @trail.task("async.items")
    async def with_items(ctx: TaskContext, keys: list[str]) -> None:
        items = await ctx.items_async(keys)
        runs.append([item.key for item in items])
        for item in items:
            async with item:
                if item.key == "b" and ctx.attempt == 1:
                    raise RuntimeError("b broke")

    task = trail.submit("async.items", {"keys": ["a", "b", "c"]})
    asyncio.run(trail.run_pending_async())
    assert trail.get(task.id).status is Status.PARTIAL_FAILURE
    trail.retry(task.id, only_failed_items=True)
    asyncio.run(trail.run_pending_async())

    assert runs == [["a", "b", "c"], ["b"]]
    assert trail.get(task.id).status is Status.COMPLETED
    assert [(i.key, i.status.value) for i in trail.items(task.id)] == [
        ("a", "completed"),
        ("b", "completed"),
        ("c", "completed"),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be from 1"),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number"),
        ({"max_attempts": True}, "max_attempts must be a whole number"),
        ({"backoff": -1}, "backoff must be a number of seconds"),
        ({"backoff": float("nan")}, "backoff must be a number of seconds"),
        ({"backoff": float("inf")}, "backoff must be a number of seconds"),
        ({"backoff": "2"}, "backoff must be a number of seconds"),
        ({"queue": ""}, "queue must be a non-empty string"),
        ({"progress_interval": -0.5}, "progress_interval must be a finite number"),
    ],
)
def test_bad_task_defaults_are_refused_at_registration(
    trail: Trail, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):

        @trail.task("bad.defaults", **options)  # type: ignore[arg-type]
        def bad(ctx: TaskContext) -> None:
            return None

    assert "bad.defaults" not in trail.registry


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "10", None])
def test_events_refuses_a_limit_that_is_not_a_positive_whole_number(
    noop: Trail, limit: object
) -> None:
    noop.submit("noop")
    with pytest.raises(InvalidInput, match="limit must be a whole number of at least 1"):
        noop.events(limit=limit)  # type: ignore[arg-type]
    assert len(noop.events(limit=1)) == 1
