"""Events out: replay from the events table, then tail it live. Framework-free; the SSE and
WebSocket endpoints both iterate ``Feed.subscribe``.

How a subscriber stays exact
----------------------------
Every subscriber reads the table itself, by its own cursor, in id order. It never reads past
the hub's *safe id*: the highest id below which every event has either committed or is known
never to commit. A reconnecting client that passes the last id it saw therefore resumes with
nothing lost and nothing repeated, and a slow client only slows its own reads.

The hub moves the safe id forward when something may have changed: this process committed
events (``Store.on_events``), another process did (PostgreSQL sent ``NOTIFY
tasktrail_events``; on a SQLite file, the commit watcher saw a commit), or a poll timer fired.

Reading once for everyone: each time the safe id moves, the hub reads the new events once
and keeps the latest ones in memory. Subscribers by task (or to everything) whose cursor is
inside that window take their events from it, so a thousand subscribers cost one query per
burst, not a thousand. Subscribers by resource, and any that fell behind the window, read
the table by their own cursor.

Out-of-order commits: on PostgreSQL an event's id comes from a sequence when the row is
inserted, but transactions commit in any order, so id 11 can be visible while id 10 is
still in flight. The hub only advances through a gap in the ids once the gap has stayed
open for ``settle_seconds`` (then it is taken for a rolled-back transaction). On SQLite
writers are serialised and commit in id order, so the safe id is simply the highest id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_right
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from tasktrail.errors import InvalidInput
from tasktrail.records import EventRecord
from tasktrail.store import Store
from tasktrail.store.listen import Listening, listen_for_events

logger = logging.getLogger("tasktrail.feed")
#: How far back the hub looks for gaps when it starts.
_STARTUP_LOOKBACK = 200
#: How long the hub waits after a failed read before it tries again.
_RETRY_SECONDS = 1.0
#: How often the hub rechecks while a gap is waiting to settle.
_GAP_RECHECK_SECONDS = 0.05
#: How many of the latest events a hub keeps in memory for its subscribers, by default.
DEFAULT_WINDOW = 5000


@dataclass
class _Hub:
    """Tracks the safe id for the subscribers of one event loop."""

    store: Store
    loop: asyncio.AbstractEventLoop
    poll_interval: float | None
    settle_seconds: float
    window_size: int = DEFAULT_WINDOW
    safe_id: int = 0
    subscribers: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _advanced: asyncio.Event = field(default_factory=asyncio.Event)
    _gaps: dict[int, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _listener: Listening | None = None
    _unregister: list[Callable[[], None]] = field(default_factory=list)
    #: The latest events, in id order: every committed event with an id in
    #: (``window_start``, ``safe_id``] is here.
    _window: deque[EventRecord] = field(default_factory=deque)
    window_start: int = 0

    def start(self) -> None:
        self._unregister.append(self.store.on_events(self.poke))
        self._listener = listen_for_events(self.store.engine, self.poke)
        if self.poll_interval is None:
            # With NOTIFY (or a SQLite file's commit watcher) polling is a safety net;
            # without either, it is how others are heard.
            self.poll_interval = 0.2 if self._listener is None else 2.0
        self._task = self.loop.create_task(self._run())

    def stop(self) -> None:
        # Never awaits: it runs in the ``finally`` of subscribers that are being cancelled,
        # where (under anyio, as in Starlette) every await would be cancelled again.
        for unregister in self._unregister:
            unregister()
        if self._task is not None:
            self._task.cancel()
        if self._listener is not None:
            self._listener.close(timeout=0)

    def poke(self) -> None:
        """Something may have committed: refresh soon. Safe to call from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self._wake.set)

    async def wait_beyond(self, cursor: int, timeout: float) -> bool:
        """Wait until the safe id passes ``cursor``; False after ``timeout`` seconds."""
        deadline = self.loop.time() + timeout
        while self.safe_id <= cursor:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return False
            advanced = self._advanced
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(advanced.wait(), remaining)
        return True

    async def _run(self) -> None:
        while not self.ready.is_set():
            try:
                await self._start_point()
            except Exception:
                logger.warning("event feed: cannot read the events table; retrying", exc_info=True)
                await asyncio.sleep(_RETRY_SECONDS)
        while True:
            timeout = _GAP_RECHECK_SECONDS if self._gaps else self.poll_interval or 0.2
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                await self._refresh()
            except Exception:
                # The database is away for a moment; subscribers wait, nothing is skipped.
                logger.warning("event feed: refresh failed; retrying", exc_info=True)
                await asyncio.sleep(_RETRY_SECONDS)

    async def _start_point(self) -> None:
        last = await asyncio.to_thread(self.store.last_event_id)
        if self.store.dialect == "postgresql":
            self.safe_id = max(0, last - _STARTUP_LOOKBACK)
            await self._refresh()
        else:
            self.safe_id = last
        self.window_start = self.safe_id
        self.ready.set()

    async def _refresh(self) -> None:
        if self.store.dialect == "postgresql":
            ids = await asyncio.to_thread(self.store.event_ids, after=self.safe_id)
            new = self._settle(ids, time.monotonic())
        else:
            new = await asyncio.to_thread(self.store.last_event_id)
        if new > self.safe_id:
            await self._fill_window(new)
            self.safe_id = new
            advanced, self._advanced = self._advanced, asyncio.Event()
            advanced.set()

    async def _fill_window(self, until: int) -> None:
        if not self.ready.is_set():
            return
        fresh = await asyncio.to_thread(
            self.store.events, after=self.safe_id, until=until, limit=self.window_size + 1
        )
        if len(fresh) > self.window_size:  # a flood: let subscribers read the table themselves
            self._window.clear()
            self.window_start = until
            return
        self._window.extend(fresh)
        while len(self._window) > self.window_size:
            self.window_start = self._window.popleft().id

    def windowed(self, after: int, until: int, task_id: str | None) -> list[EventRecord] | None:
        """The events with ids in (``after``, ``until``] of ``task_id`` (or of all tasks),
        from memory; None when ``after`` is older than the window."""
        if after < self.window_start:
            return None
        window = self._window
        start = bisect_right(window, after, key=lambda e: e.id)
        found = []
        for index in range(start, len(window)):
            event = window[index]
            if event.id > until:
                break
            if task_id is None or event.task_id == task_id:
                found.append(event)
        return found

    def _settle(self, ids: list[int], now: float) -> int:
        safe = self.safe_id
        for event_id in ids:
            missing = safe + 1
            if event_id > missing:
                first_seen = self._gaps.setdefault(missing, now)
                if now - first_seen < self.settle_seconds:
                    break
            safe = event_id
        self._gaps = {start: seen for start, seen in self._gaps.items() if start > safe}
        return safe


class Feed:
    """Replay plus live tail of one store's events, for any number of subscribers.

    ``poll_interval`` (seconds) is how often the hub looks for events written by other
    processes without telling it: by default 2 where PostgreSQL ``NOTIFY`` wakes it first,
    else 0.2. ``keepalive`` is how long a subscriber may go
    without a message before it is handed a ``None`` tick. ``window`` is how many of the
    latest events are kept in memory for all subscribers to share.
    """

    def __init__(
        self,
        store: Store,
        *,
        poll_interval: float | None = None,
        settle_seconds: float = 2.0,
        keepalive: float = 15.0,
        batch_size: int = 500,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.settle_seconds = settle_seconds
        self.keepalive = keepalive
        self.batch_size = batch_size
        self.window = window
        self._hubs: dict[asyncio.AbstractEventLoop, _Hub] = {}

    async def subscribe(
        self,
        *,
        task_id: str | None = None,
        resource: tuple[str, str] | None = None,
        after: int | None = None,
    ) -> AsyncGenerator[EventRecord | None, None]:
        """Every event matching the filter with an id above ``after``, oldest first, then
        each new one as it commits; ``None`` now and then as a keep-alive tick.

        Filter by ``task_id``, or by ``resource`` (the events of every task linked to it).
        Without ``after``, a filtered subscription starts from the beginning of history and
        an unfiltered one from now. Ends only when the caller stops iterating.
        """
        if after is not None and after < 0:
            raise InvalidInput("after must be an event id, 0 or more")
        hub = await self._join()
        try:
            await hub.ready.wait()
            if after is None:
                after = 0 if task_id is not None or resource is not None else hub.safe_id
            cursor = after
            while True:
                until = hub.safe_id
                cached = None if resource is not None else hub.windowed(cursor, until, task_id)
                if cached is not None:
                    for event in cached:
                        yield event
                    # Never backwards: a client may resume from an id the hub has not
                    # reached yet (read elsewhere, or written by another process).
                    cursor = max(cursor, until)
                elif cursor < until:
                    batch = await asyncio.to_thread(
                        self.store.events,
                        task_id=task_id,
                        resource=resource,
                        after=cursor,
                        until=until,
                        limit=self.batch_size,
                    )
                    for event in batch:
                        yield event
                    full = len(batch) == self.batch_size
                    cursor = batch[-1].id if full else max(cursor, until)
                    if full:
                        continue
                if not await hub.wait_beyond(cursor, self.keepalive):
                    yield None
        finally:
            self._leave(hub)

    async def start_point(self) -> int:
        """The cursor an unfiltered subscription started now would begin after: pass it as
        ``after`` (and to the client) so that a reconnect resumes exactly from here."""
        hub = await self._join()
        try:
            await hub.ready.wait()
            return hub.safe_id
        finally:
            self._leave(hub)

    async def _join(self) -> _Hub:
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            hub = _Hub(self.store, loop, self.poll_interval, self.settle_seconds, self.window)
            self._hubs[loop] = hub
            hub.start()
        hub.subscribers += 1
        return hub

    def _leave(self, hub: _Hub) -> None:
        hub.subscribers -= 1
        if hub.subscribers == 0 and self._hubs.get(hub.loop) is hub:
            del self._hubs[hub.loop]
            hub.stop()
