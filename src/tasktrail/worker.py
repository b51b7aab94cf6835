"""The embedded worker: claims queued tasks from the database and runs them — sync functions
on a pool of threads, async ones on one event loop — through the same ``Runner`` every
executor uses. A thread whose task completes claims its next task in the same write as the
completion and runs it; the dispatch thread claims into the slots left free.

Besides running tasks it keeps them honest: one heartbeat statement per beat for all of its
runs, a reaper for the runs of workers that died, a forced end for runs that ignore a
cancel, and a graceful shutdown that puts unfinished runs back in the queue.

Waking up costs nothing while idle: a task submitted in this process wakes the worker
through the ``EmbeddedExecutor``; tasks queued by other processes are heard through a
``LISTEN`` connection on PostgreSQL (whose thread claims the task it hears of into a free
slot itself), and on a SQLite file by watching its commits.
Scheduled tasks are promoted when the earliest of them falls due, not on a fixed tick.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import FrameType
from typing import Any

from tasktrail.errors import InvalidInput, InvalidTransition, RunSuperseded
from tasktrail.executor import EmbeddedExecutor
from tasktrail.records import Claimed, TaskRecord
from tasktrail.runner import NextClaim, Runner
from tasktrail.settings import heartbeat_settings, positive
from tasktrail.states import CANCEL, REQUEUE, Status
from tasktrail.store.channels import SCHEDULED_PAYLOAD
from tasktrail.store.listen import Listening, listen_for_queued
from tasktrail.trail import Trail

logger = logging.getLogger("tasktrail.worker")

DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_CANCEL_GRACE = 10.0
#: With NOTIFY or a SQLite file's commit watcher, polling is only a safety net; without
#: either (an in-memory database), polling is how work from elsewhere is found.
POLL_WITH_LISTEN = 5.0
POLL_WITHOUT_LISTEN = 0.5
_MIN_WAIT = 0.01
#: How often, at most, a hint that scheduled tasks may have changed makes the worker re-read
#: when they fall due. On a SQLite file every commit is such a hint, and a read at each one
#: cost a busy worker a fifth of its throughput.
RECHECK_DUE_EVERY = 0.1
_ERROR_PAUSE = 1.0


@dataclass
class _Run:
    """One run this worker is executing; ``forced`` once its cancel was forced.

    ``cancel_deadline`` (``time.monotonic``) is when a cancel it has not acknowledged is
    forced; set, and read, by the beat thread only.
    """

    task: TaskRecord
    future: concurrent.futures.Future[Any] | None = None
    forced: bool = False
    cancel_deadline: float | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.task.id, self.task.attempts)


class Worker:
    """Runs queued tasks of ``trail`` in background threads of this process.

    At most ``concurrency`` tasks (sync and async together) run at once. Only tasks whose
    names ``trail`` has registered are taken, and with ``queues`` only from those queues.

    ``heartbeat_interval`` and ``heartbeat_timeout`` default to the environment's
    ``TASKTRAIL_HEARTBEAT_INTERVAL`` and ``TASKTRAIL_HEARTBEAT_TIMEOUT`` (else 5 s and 30 s):
    a running task whose heartbeat is older than the timeout is taken back by the reaper
    that every worker runs. A cancel that a run does not acknowledge within
    ``cancel_grace`` seconds is forced when that grace ends (the worker learns of a cancel
    asked in another process at its next heartbeat, so with a grace shorter than the
    heartbeat interval, at that heartbeat). ``stop`` waits
    ``shutdown_timeout`` seconds for running tasks before it queues them again.
    ``poll_interval`` is how often the database is checked without a wake-up (default 5 s
    when other processes can be heard: PostgreSQL ``LISTEN``, a SQLite file's commits;
    else 0.5 s).
    """

    def __init__(
        self,
        trail: Trail,
        *,
        concurrency: int = 4,
        queues: Collection[str] | None = None,
        name: str | None = None,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        poll_interval: float | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidInput(f"concurrency must be a whole number of at least 1: {concurrency!r}")
        if isinstance(queues, str):
            raise InvalidInput("queues must be a collection of queue names, not one string")
        self.trail = trail
        self.store = trail.store
        self.concurrency = concurrency
        self.queues = frozenset(queues) if queues else None
        self.name = name or trail.worker_name
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_settings(
            heartbeat_interval, heartbeat_timeout
        )
        self._poll_interval = (
            positive("poll_interval", poll_interval) if poll_interval is not None else None
        )
        self.shutdown_timeout = max(0.0, float(shutdown_timeout))
        self.cancel_grace = max(0.0, float(cancel_grace))

        self._runner = Runner(self.store, trail.registry, worker=self.name)
        # Share the trail's executor so that a submit in this process wakes us at once.
        executor = trail.executor
        self._wake = executor if isinstance(executor, EmbeddedExecutor) else EmbeddedExecutor()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._runs: dict[tuple[str, int], _Run] = {}
        self._claiming = 0  # claims under way, each holding a slot
        # Set once ``stop`` has put the unfinished runs back: a claim landing later (its
        # database stalled past the stop's wait) is put back too, not run.
        self._closed = False
        self._jobs: queue.SimpleQueue[TaskRecord | None] = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self._stopping = threading.Event()
        self._beats_stopped = threading.Event()
        self._state = "new"
        # Set when scheduled tasks may have changed; only the dispatch thread clears it.
        self._recheck_due = threading.Event()
        self._promote_at = 0.0
        self._rechecked_at = float("-inf")
        self._unwatch_due: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listening | None = None
        self._threads: dict[str, threading.Thread] = {}

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def poll_interval(self) -> float:
        """Seconds between looks at the database when nothing wakes the worker."""
        if self._poll_interval is not None:
            return self._poll_interval
        return POLL_WITH_LISTEN if self._listener is not None else POLL_WITHOUT_LISTEN

    def start(self) -> None:
        """Start claiming and running tasks in background threads; returns at once."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"worker {self.name} was already started")
            self._state = "started"
        self._loop = loop = asyncio.new_event_loop()
        # A task scheduled in this process (or, through NOTIFY, in another) may fall due
        # before the next poll: both make the dispatch thread re-read the due times.
        self._unwatch_due = self._wake.watch_due_times(self._recheck_due)
        # The listener's thread claims what it hears of (``_claim_heard``), on a connection
        # it keeps rather than one from the pool per claim.
        self._listener = listen_for_queued(
            self.store.engine, self._heard, queues=self.queues, around=self.store.keep_connection
        )
        self._spawn("loop", loop.run_forever)
        for number in range(self.concurrency):
            self._spawn(f"thread-{number}", self._work)
        self._spawn("beat", self._beat_loop)
        self._spawn("dispatch", self._dispatch_loop)
        logger.info(
            "worker %s started: concurrency %d, queues %s, heartbeat every %gs (timeout %gs)",
            self.name,
            self.concurrency,
            ", ".join(sorted(self.queues)) if self.queues else "all",
            self.heartbeat_interval,
            self.heartbeat_timeout,
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: claim nothing more, wait up to ``timeout`` seconds (default
        ``shutdown_timeout``) for running tasks, then put the unfinished ones back in the
        queue (with an event saying why) and release threads and connections.

        Calling it again, or on a worker never started, does nothing.
        """
        self._stop_requested.set()
        with self._lock:
            if self._state != "started":
                return
            self._state = "stopping"
        self._stopping.set()
        self._wake.wake()
        self._threads["dispatch"].join()
        if self._unwatch_due is not None:
            self._unwatch_due()
        if self._listener is not None:
            self._listener.close()
        wait = self.shutdown_timeout if timeout is None else max(0.0, timeout)
        with self._changed:
            self._changed.wait_for(
                lambda: not self._unfinished() and not self._claiming, timeout=wait
            )
            unfinished = self._unfinished()
            self._closed = True
        for run in unfinished:
            self._requeue(
                run,
                f"worker {self.name} shut down; run {run.task.attempts} had not finished "
                f"after {wait:g}s, so the task is back in the queue",
                waited=wait,
            )
        self._beats_stopped.set()
        self._threads["beat"].join()
        for _ in range(self.concurrency):
            self._jobs.put(None)
        self._stop_loop()
        with self._lock:
            self._state = "stopped"
        logger.info("worker %s stopped; %d unfinished runs requeued", self.name, len(unfinished))

    def run(self) -> None:
        """Run until SIGTERM or SIGINT (or ``stop`` from another thread), then stop
        gracefully. A second signal ends the process at once; the reaper recovers its runs.

        Signal handlers are installed only when called from the main thread.
        """
        previous = self._install_signal_handlers()
        try:
            self.start()
            self._stop_requested.wait()
        finally:
            try:
                self.stop()
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

    def running(self) -> list[TaskRecord]:
        """The tasks this worker is running now, as they were claimed."""
        with self._lock:
            return [run.task for run in self._runs.values()]

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, role: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"tasktrail-{role}", daemon=True)
        self._threads[role] = thread
        thread.start()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_requested.is_set():
            logger.warning("worker %s: second signal, exiting now", self.name)
            os._exit(128 + signum)
        logger.warning(
            "worker %s: %s received; finishing running tasks (send again to exit now)",
            self.name,
            signal.Signals(signum).name,
        )
        self._stop_requested.set()

    # -- claiming -----------------------------------------------------------------------

    def _heard(self, queue: str) -> None:
        if queue == SCHEDULED_PAYLOAD:
            self._recheck_due.set()
        elif self._claim_heard():
            return
        self._wake.wake()

    def _claim_heard(self) -> bool:
        """A task was queued in another process (PostgreSQL's NOTIFY): claim it in the
        listener's thread, awake already, rather than wake the dispatch thread for it, a
        hand-off that cost an idle worker 0.25-0.36 ms of its pickup. True when the
        dispatch thread has nothing to do for it: the task was claimed here (or by another
        worker), and no other was queued.
        """
        with self._lock:
            if self._slots_full():
                # No free slot: the wake-up tells a run ending meanwhile to look (``_ended``).
                return False
        try:
            claimed = self._claim()
        except Exception:
            logger.exception("worker %s: claiming a task it heard of failed", self.name)
            return False
        if claimed is None:
            return True  # another worker took it (or a claimer of ours took the last slot)
        self._hand_off(claimed.task)
        return not claimed.more_queued

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            # Taken before looking, so that a wake-up during the look is not lost.
            token = self._wake.mark()
            try:
                now = time.monotonic()
                if now >= self._next_promotion():
                    self._recheck_due.clear()
                    self._rechecked_at = now
                    self._promote_at = now + self._promote_due()
                if (claimed := self._claim()) is not None:
                    self._hand_off(claimed.task)
                    if claimed.more_queued:
                        continue
                    # Nothing else was queued: wait for news of a task (one queued since
                    # the claim's look has woken the worker after ``token``).
            except Exception:
                logger.exception("worker %s: looking for work failed", self.name)
                self._stopping.wait(_ERROR_PAUSE)
                continue
            self._wake.wait(token, max(_MIN_WAIT, self._next_promotion() - time.monotonic()))

    def _next_promotion(self) -> float:
        """When (``time.monotonic``) the dispatch thread next promotes due tasks: when the
        earliest known one falls due, or soon after a hint that the due times changed."""
        if self._recheck_due.is_set():
            return min(self._promote_at, self._rechecked_at + RECHECK_DUE_EVERY)
        return self._promote_at

    def _promote_due(self) -> float:
        """Queue the scheduled tasks that are due; seconds until the next look."""
        due = self.store.next_due()
        if due is not None and due <= self.store.clock():
            self.store.promote_due(actor=self.name)
            due = self.store.next_due()
        if due is None:
            return self.poll_interval
        return min(self.poll_interval, (due - self.store.clock()).total_seconds())

    def _claim(self) -> Claimed | None:
        """Claim the next task into a free slot; None when no slot is free, nothing is
        queued, or the claim landed after ``stop`` put the unfinished runs back (the task
        is then put back too). Counted as running from the claim on, so claimers never
        take more than ``concurrency`` tasks between them."""
        with self._lock:
            if self._stopping.is_set() or self._slots_full():
                return None
            self._claiming += 1
        claimed = None
        try:
            # Only what this process can run: another app sharing the database runs the rest.
            names = self.trail.registry.names()
            claimed = self.store.claim_next(worker=self.name, queues=self.queues, names=names)
        finally:
            with self._changed:
                self._claiming -= 1
                admitted = claimed is not None and self._admit(claimed.task)
                self._changed.notify_all()
        if claimed is not None and not admitted:
            self._put_back_late(claimed.task)
            return None
        return claimed

    def _admit(self, task: TaskRecord) -> bool:
        """Count a task just claimed as running here, unless ``stop`` has already put the
        unfinished runs back (the caller holds ``_lock``)."""
        if self._closed:
            return False
        run = _Run(task)
        self._runs[run.key] = run
        return True

    def _put_back_late(self, task: TaskRecord) -> None:
        """Queue again a task whose claim landed after ``stop`` put the unfinished runs back."""
        try:
            self._requeue(
                _Run(task),
                f"worker {self.name} shut down while claiming run {task.attempts}; it never "
                "started, so the task is back in the queue",
                waited=0.0,
            )
        except Exception:
            logger.exception(
                "worker %s: could not put back %s, claimed as it stopped; the reaper will",
                self.name,
                task.id,
            )

    def _slots_full(self) -> bool:
        """Whether every slot holds a run or a claim under way (the caller holds ``_lock``)."""
        return len(self._runs) + self._claiming >= self.concurrency

    def _hand_off(self, task: TaskRecord) -> None:
        """Run a task just claimed into a slot: an async one on the event loop, a sync one
        in the next worker thread free."""
        if (sync := self._start(task)) is not None:
            self._jobs.put(sync)

    def _start(self, task: TaskRecord) -> TaskRecord | None:
        """Start a claimed async task on the event loop; a sync one comes back, for a
        thread to run."""
        if not self.trail.registry.get(task.name).is_async:
            return task
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._run_async(task), self._loop)
        with self._lock:
            if (run := self._runs.get((task.id, task.attempts))) is not None:
                run.future = future
        return None

    # -- running ------------------------------------------------------------------------

    def _work(self) -> None:
        task = self._jobs.get()
        while task is not None:
            recorded = claimed = None
            next_claim = self._next_claim()
            started = self._wake.mark()
            try:
                recorded, claimed = self._runner.run_then_claim(task, next_claim)
            except Exception:
                # Recording the end failed (the database?): the reaper will take it back.
                logger.exception("worker %s: could not record the end of %s", self.name, task.id)
            finally:
                # A completion with a claim looked at the queue itself.
                looked = (
                    next_claim is not None
                    and recorded is not None
                    and recorded.status is Status.COMPLETED
                )
                claimed = self._ended(
                    task, recorded, claimed, looked_since=started if looked else None
                )
            # A task claimed with the end of the last one runs here: no hand-off to the
            # dispatch thread and back while work is queued.
            sync = None if claimed is None else self._start(claimed)
            task = sync if sync is not None else self._jobs.get()

    def _next_claim(self) -> NextClaim | None:
        """What the thread whose run ends takes next, in the same write (none once
        stopping)."""
        if self._stopping.is_set():
            return None
        return NextClaim(self.queues, self.trail.registry.names())

    async def _run_async(self, task: TaskRecord) -> None:
        recorded = None
        try:
            recorded = await self._runner.run_async(task)
        except Exception:
            logger.exception("worker %s: could not record the end of %s", self.name, task.id)
        finally:
            self._ended(task, recorded)

    def _ended(
        self,
        task: TaskRecord,
        recorded: TaskRecord | None,
        claimed: TaskRecord | None = None,
        *,
        looked_since: int | None = None,
    ) -> TaskRecord | None:
        """Run ``task`` is over; ``claimed``, taken with its end, runs in its slot: returned,
        unless it came too late to run and was put back in the queue.

        ``looked_since``: the end looked at the queue for the slot, and this is the wake-up
        mark taken when the run started."""
        with self._changed:
            self._runs.pop((task.id, task.attempts), None)
            admitted = claimed is None or self._admit(claimed)
            self._changed.notify_all()
        if claimed is not None and not admitted:
            self._put_back_late(claimed)
            claimed = None
        backed_off = recorded is not None and recorded.status is Status.SCHEDULED
        if backed_off:
            self._recheck_due.set()  # look again for when it falls due
        # A slot is free: the dispatch thread fills it; unless the end found nothing queued
        # and nothing woke the worker since the run started (a task queued meanwhile may
        # have found every slot taken). An idle worker then looks once, not twice.
        quiet = looked_since is not None and self._wake.mark() == looked_since
        if backed_off or (claimed is None and not quiet):
            self._wake.wake()
        return claimed

    def _unfinished(self) -> list[_Run]:
        return [run for run in self._runs.values() if not run.forced]

    # -- heartbeats, cancels, reaping ---------------------------------------------------

    def _beat_loop(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_interval
        while not self._beats_stopped.wait(
            max(0.0, min(next_beat, self._next_cancel_deadline()) - time.monotonic())
        ):
            if time.monotonic() < next_beat:
                self._force_overdue()  # a grace period ended between two beats
                continue
            next_beat = time.monotonic() + self.heartbeat_interval
            try:
                self._beat()
            except Exception:
                logger.exception("worker %s: heartbeat failed", self.name)
            try:
                if self.store.reap_lost(self.heartbeat_timeout, actor=self.name):
                    self._recheck_due.set()
                    self._wake.wake()
            except Exception:
                logger.exception("worker %s: reaping lost runs failed", self.name)

    def _beat(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        if not runs:
            return
        beats = self.store.heartbeat(self.name, {run.task.id for run in runs})
        now = self.store.clock()
        for run in runs:
            beat = beats.get(run.task.id)
            if beat is None or beat.attempt != run.task.attempts or run.forced:
                continue  # the run lost its task; the Runner will discard its end
            asked = beat.cancel_requested_at
            if asked is None or run.cancel_deadline is not None:
                continue
            left = self.cancel_grace - (now - asked).total_seconds()
            run.cancel_deadline = time.monotonic() + left
        self._force_overdue()

    def _next_cancel_deadline(self) -> float:
        with self._lock:
            deadlines = [r.cancel_deadline for r in self._runs.values() if not r.forced]
        return min((d for d in deadlines if d is not None), default=float("inf"))

    def _force_overdue(self) -> None:
        now = time.monotonic()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            if run.cancel_deadline is not None and run.cancel_deadline <= now and not run.forced:
                run.cancel_deadline = None  # once: if it ended meanwhile, so be it
                try:
                    self._force_cancel(run)
                except Exception:
                    logger.exception("worker %s: forcing a cancel failed", self.name)
                    run.cancel_deadline = now + _ERROR_PAUSE

    def _force_cancel(self, run: _Run) -> None:
        task = run.task
        try:
            self.store.transition(
                task.id,
                CANCEL,
                attempt=task.attempts,
                actor=self.name,
                message=(
                    f"cancel forced: run {task.attempts} did not stop within the "
                    f"{self.cancel_grace:g}s grace period; anything it returns is discarded"
                ),
                data={"forced": True, "grace": self.cancel_grace},
            )
        except (RunSuperseded, InvalidTransition):
            return  # it ended on its own meanwhile
        run.forced = True
        if run.future is not None:
            run.future.cancel()
        with self._changed:
            self._changed.notify_all()

    def _requeue(self, run: _Run, message: str, *, waited: float) -> None:
        task = run.task
        try:
            self.store.transition(
                task.id,
                REQUEUE,
                attempt=task.attempts,
                actor=self.name,
                message=message,
                data={"shutdown": True, "waited": waited},
            )
        except (RunSuperseded, InvalidTransition):
            return  # it ended (or was taken away) meanwhile
        if run.future is not None:
            run.future.cancel()

    def _stop_loop(self) -> None:
        loop = self._loop
        assert loop is not None

        async def cancel_all() -> None:
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for pending_task in pending:
                pending_task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=2.0)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            logger.warning("worker %s: some async tasks did not stop", self.name)
        loop.call_soon_threadsafe(loop.stop)
        self._threads["loop"].join(timeout=2.0)
        if not self._threads["loop"].is_alive():
            loop.close()
