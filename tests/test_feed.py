"""``Feed``: replay then live tail, wake-ups from this process and from others, and exactness
when PostgreSQL transactions commit out of id order."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tasktrail import Trail
from tasktrail.feed import Feed
from tasktrail.records import EventRecord


@pytest.fixture
def echo_trail(trail: Trail) -> Trail:
    @trail.task("feed.echo")
    def echo(ctx: object) -> None:
        return None

    return trail


class Collector:
    """Iterates a subscription in a task and keeps what it yields."""

    def __init__(self, subscription: AsyncIterator[EventRecord | None]) -> None:
        self.events: list[EventRecord] = []
        self._subscription = subscription
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self._subscription:
            if event is not None:
                self.events.append(event)

    async def wait_for(self, check: Callable[[list[EventRecord]], bool], timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check(self.events):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not met within {timeout}s; got {self.events}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


def ids(events: list[EventRecord]) -> list[int]:
    return [e.id for e in events]


def test_replays_history_then_tails_new_events(echo_trail: Trail) -> None:
    first = echo_trail.submit("feed.echo", run=False)
    echo_trail.run(first.id)

    async def scenario() -> None:
        feed = Feed(echo_trail.store, poll_interval=60)  # only wake-ups, no polling
        collector = Collector(feed.subscribe(task_id=first.id))
        await collector.wait_for(lambda e: len(e) == 2, 5)
        await asyncio.to_thread(echo_trail.cancel, first.id)
        await collector.wait_for(lambda e: len(e) == 3, 5)
        await collector.close()
        assert collector.events == echo_trail.events(first.id)
        assert feed._hubs == {}  # the last subscriber gone, the hub is stopped

    asyncio.run(scenario())


def test_filters_by_resource_and_resumes_after_a_cursor(echo_trail: Trail) -> None:
    from tasktrail import Link

    mine = [echo_trail.submit("feed.echo", links=[Link("roadmap", "r1")]) for _ in range(3)]
    echo_trail.submit("feed.echo", links=[Link("roadmap", "r2")])

    async def scenario() -> None:
        feed = Feed(echo_trail.store)
        everything = Collector(feed.subscribe(resource=("roadmap", "r1")))
        await everything.wait_for(lambda e: len(e) == 3, 5)
        assert [e.task_id for e in everything.events] == [t.id for t in mine]
        resumed = Collector(
            feed.subscribe(resource=("roadmap", "r1"), after=everything.events[0].id)
        )
        await resumed.wait_for(lambda e: len(e) == 2, 5)
        assert resumed.events == everything.events[1:]
        await everything.close()
        await resumed.close()

    asyncio.run(scenario())


def test_an_unfiltered_subscription_without_cursor_starts_now(echo_trail: Trail) -> None:
    old = echo_trail.submit("feed.echo")

    async def scenario() -> None:
        feed = Feed(echo_trail.store)
        collector = Collector(feed.subscribe())

        def hub_ready() -> bool:
            return bool(feed._hubs) and next(iter(feed._hubs.values())).ready.is_set()

        while not hub_ready():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the subscriber has taken its starting point
        new = await asyncio.to_thread(echo_trail.submit, "feed.echo")
        await collector.wait_for(lambda e: len(e) >= 1, 5)
        assert [e.task_id for e in collector.events] == [new.id]
        assert old.id not in {e.task_id for e in collector.events}
        await collector.close()

    asyncio.run(scenario())


def test_hears_events_committed_by_another_process(
    echo_trail: Trail, database_url: str, tmp_path: Path
) -> None:
    task = echo_trail.submit("feed.echo", run=False)

    async def scenario() -> None:
        # No polling: only LISTEN (PostgreSQL) or the commit watcher (SQLite) can bring the
        # other process's event.
        feed = Feed(echo_trail.store, poll_interval=60)
        collector = Collector(feed.subscribe(task_id=task.id))
        await collector.wait_for(lambda e: len(e) == 1, 5)
        code = (
            "import sys; from tasktrail import Trail; "
            "t = Trail(sys.argv[1]); t.cancel(sys.argv[2], reason='elsewhere'); t.close()"
        )
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", code, database_url, task.id],
            check=True,
            timeout=60,
        )
        await collector.wait_for(lambda e: len(e) == 2, 10)
        assert collector.events[1].message == "elsewhere"
        await collector.close()

    asyncio.run(scenario())


def test_a_slow_subscriber_does_not_hold_up_the_others(echo_trail: Trail) -> None:
    async def scenario() -> None:
        feed = Feed(echo_trail.store, batch_size=10)
        stalled = feed.subscribe()
        first = asyncio.create_task(anext(stalled))  # starts, then is never read again
        fast = Collector(feed.subscribe())
        await asyncio.sleep(0.1)
        submitted = await asyncio.to_thread(
            lambda: [echo_trail.submit("feed.echo").id for _ in range(40)]
        )
        await fast.wait_for(lambda e: len(e) == 40, 10)
        assert [e.task_id for e in fast.events] == submitted
        await fast.close()
        first.cancel()
        await stalled.aclose()

    asyncio.run(scenario())


def test_refuses_a_negative_cursor(echo_trail: Trail) -> None:
    from tasktrail import InvalidInput

    async def scenario() -> None:
        with pytest.raises(InvalidInput, match="after"):
            await anext(Feed(echo_trail.store).subscribe(after=-1))

    asyncio.run(scenario())


@pytest.fixture
def pg_trail(echo_trail: Trail, database_url: str) -> Trail:
    if not database_url.startswith("postgresql"):
        pytest.skip("out-of-order commits happen on PostgreSQL only; SQLite serialises writers")
    return echo_trail


def test_an_event_committed_late_with_a_lower_id_is_not_skipped(pg_trail: Trail) -> None:
    async def scenario() -> None:
        feed = Feed(pg_trail.store, settle_seconds=10, poll_interval=60)
        collector = Collector(feed.subscribe(after=pg_trail.store.last_event_id()))
        await asyncio.sleep(0.2)
        slow_open = threading.Event()
        release = threading.Event()

        def slow_transaction() -> str:
            with pg_trail.engine.connect() as conn, conn.begin():
                record = pg_trail.submit("feed.echo", using=conn)  # takes the lower id
                slow_open.set()
                release.wait(10)
            return record.id

        slow = asyncio.create_task(asyncio.to_thread(slow_transaction))
        await asyncio.to_thread(slow_open.wait, 10)
        fast = await asyncio.to_thread(pg_trail.submit, "feed.echo")  # higher id, commits first
        await asyncio.sleep(0.5)
        assert collector.events == [], "delivered past an id that had not committed yet"

        release.set()
        slow_id = await slow
        await collector.wait_for(lambda e: len(e) == 2, 5)
        assert [e.task_id for e in collector.events] == [slow_id, fast.id]
        assert ids(collector.events) == sorted(ids(collector.events))
        await collector.close()

    asyncio.run(scenario())


def test_a_rolled_back_id_is_passed_after_the_settle_window(pg_trail: Trail) -> None:
    async def scenario() -> None:
        feed = Feed(pg_trail.store, settle_seconds=0.5, poll_interval=60)
        collector = Collector(feed.subscribe(after=pg_trail.store.last_event_id()))
        await asyncio.sleep(0.2)

        def rolled_back() -> None:
            with pg_trail.engine.connect() as conn:
                transaction = conn.begin()
                pg_trail.submit("feed.echo", using=conn)
                transaction.rollback()

        await asyncio.to_thread(rolled_back)
        kept = await asyncio.to_thread(pg_trail.submit, "feed.echo")
        await collector.wait_for(lambda e: len(e) == 1, 5)
        assert [e.task_id for e in collector.events] == [kept.id]
        await collector.close()

    asyncio.run(scenario())


def test_subscribers_behind_the_shared_window_read_the_table(echo_trail: Trail) -> None:
    """The hub keeps only the latest ``window`` events in memory; a burst larger than that
    (and a subscriber whose cursor is older) must still get every event, in order."""

    async def scenario() -> None:
        feed = Feed(echo_trail.store, window=3, batch_size=4)
        live = Collector(feed.subscribe())
        by_task_ids: list[str] = []
        while not feed._hubs or not next(iter(feed._hubs.values())).ready.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        by_task_ids = await asyncio.to_thread(
            lambda: [echo_trail.submit("feed.echo").id for _ in range(10)]
        )
        await live.wait_for(lambda e: len(e) == 10, 10)
        assert [e.task_id for e in live.events] == by_task_ids

        late = Collector(feed.subscribe(after=live.events[2].id))
        await late.wait_for(lambda e: len(e) == 7, 10)
        assert late.events == live.events[3:]
        one_task = Collector(feed.subscribe(task_id=by_task_ids[-1]))
        await one_task.wait_for(lambda e: len(e) == 1, 10)
        assert one_task.events == live.events[-1:]
        for collector in (live, late, one_task):
            await collector.close()

    asyncio.run(scenario())
