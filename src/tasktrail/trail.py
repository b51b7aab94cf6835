"""``Trail``: the public facade. Register task functions, submit and steer tasks, read
their state and history. Every call has an async twin named ``<call>_async``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from tasktrail import enqueue
from tasktrail.context import check_progress_interval
from tasktrail.errors import InvalidInput
from tasktrail.executor import EmbeddedExecutor, Executor
from tasktrail.records import EventRecord, ItemCounts, ItemRecord, Link, Page, TaskRecord
from tasktrail.registry import Registry, TaskDefinition
from tasktrail.runner import Runner
from tasktrail.staleness import (
    StaleProbe,
    StatusCheck,
    checked_items,
    probe_faults,
    uncovered,
)
from tasktrail.states import RUN, SCHEDULE, Status
from tasktrail.store import NewTask, Store, create_engine
from tasktrail.store.migrate import ensure_schema
from tasktrail.submission import Submission, check_policy, new_task
from tasktrail.text import refuse_nul

DEFAULT_DATABASE_URL = "sqlite:///tasktrail.db"
F = TypeVar("F", bound=Callable[..., Any])
P = TypeVar("P", bound=Callable[[str], Any])
Using = Connection | Session
AsyncUsing = AsyncConnection | AsyncSession
_DISPATCHED = frozenset({Status.QUEUED, Status.SCHEDULED})


def default_worker_name() -> str:
    """``host:pid``: how this process signs what it does."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Trail:
    """Durable, linked, observable tasks in one SQL database.

    ``url`` defaults to ``TASKTRAIL_DATABASE_URL``, else ``sqlite:///tasktrail.db``.
    ``auto_migrate`` (default: on for SQLite, off elsewhere) brings the schema up to date
    on start; when off, an outdated schema raises ``SchemaNotReady``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        executor: Executor | None = None,
        auto_migrate: bool | None = None,
        worker_name: str | None = None,
    ) -> None:
        owns_engine = engine is None
        if engine is None:
            url = url or os.environ.get("TASKTRAIL_DATABASE_URL") or DEFAULT_DATABASE_URL
            engine = create_engine(url)
        self.engine = engine
        if auto_migrate is None:
            auto_migrate = engine.dialect.name == "sqlite"
        try:
            ensure_schema(engine, auto_migrate=auto_migrate)
        except BaseException:
            if owns_engine:
                engine.dispose()
            raise
        self.store = Store(engine)
        self.probes: dict[str, StaleProbe] = {}
        self.registry = Registry()
        self.executor: Executor = executor or EmbeddedExecutor()
        self.worker_name = worker_name or default_worker_name()
        self.executor.attach(self)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # -- registering --------------------------------------------------------------------

    def task(
        self,
        name: str,
        *,
        max_attempts: int = 1,
        backoff: float = 2.0,
        queue: str = "default",
        priority: int = 0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        progress_interval: float | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function (sync or async) as the task ``name``.

        The function receives a ``TaskContext`` first, then the task's params as keyword
        arguments. A failing run is tried again while attempts remain and its error is an
        instance of ``retry_on``, after ``backoff * 2 ** (attempt - 1)`` seconds (jittered).
        Defaults a submission would refuse (``max_attempts`` not a whole number from 1,
        ``backoff`` not a finite number of seconds ≥ 0, …) raise ``InvalidInput`` here.
        ``progress_interval`` (seconds, default 0.25) is how often, at most, its progress
        is written; 0 writes every change.
        """
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidInput("a task name must be a non-empty string of at most 200 characters")
        check_policy(max_attempts=max_attempts, backoff=backoff, queue=queue, priority=priority)
        if progress_interval is not None:
            check_progress_interval(progress_interval)

        def register(function: F) -> F:
            self.registry.add(
                TaskDefinition(
                    name=name,
                    function=function,
                    max_attempts=max_attempts,
                    backoff=backoff,
                    queue=queue,
                    priority=priority,
                    retry_on=retry_on,
                    progress_interval=progress_interval,
                )
            )
            return function

        return register

    def stale_probe(self, resource_type: str, *, item_type: str | None = None) -> Callable[[P], P]:
        """Register the decorated ``probe(resource_id)`` (sync or async) for ``resource_type``.

        It returns the items of that resource that *claim* to be in progress, as dicts with
        an ``"item"`` id and anything else worth showing, e.g. ``{"item": "c7",
        "content_type": "tutorial", "status": "generating"}``. Each item is a resource of
        type ``item_type`` (or of its own ``"type"``): a task linked to the item covers it;
        a task linked to the resource and to no item covers them all. ``status_check``
        reports the items nothing covers.
        """
        if not isinstance(resource_type, str) or not resource_type.strip():
            raise InvalidInput("a stale probe's resource type must be a non-empty string")

        def register(function: P) -> P:
            self.probes[resource_type] = StaleProbe(resource_type, item_type, function)
            return function

        return register

    # -- submitting and steering --------------------------------------------------------

    def submit(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        links: Iterable[Link] | None = None,
        dedupe_key: str | None = None,
        run: bool = True,
        max_attempts: int | None = None,
        backoff: float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        run_after: datetime | None = None,
        description: str | None = None,
        actor: str | None = None,
        using: Using | None = None,
    ) -> TaskRecord:
        """Record a new task and its links; queue it unless ``run=False``.

        A ``dedupe_key`` already taken returns that task, with ``deduplicated=True``.
        With ``using`` (your ``Connection`` or ``Session``) the task joins your transaction:
        tasktrail commits nothing, and the executor hears of the task only after your
        COMMIT has succeeded — in the ``Session``'s ``after_commit``; for a bare
        ``Connection`` when it next begins a transaction or goes back to the pool (the end
        of ``with engine.begin()``). A rolled-back transaction, or savepoint the task was
        submitted in, drops it, and a failed COMMIT dispatches nothing.
        Bad input raises ``InvalidInput`` (``UnknownTask`` for a name never registered)
        before anything is written.
        """
        submission = Submission(
            name, params, links=links, dedupe_key=dedupe_key, run=run,
            max_attempts=max_attempts, backoff=backoff, queue=queue, priority=priority,
            run_after=run_after, description=description,
        )  # fmt: skip
        new = self._new_task(submission, self.store.clock())
        (record,) = self._recorded(
            lambda conn: [self.store.insert_task(new, actor=actor, conn=conn)], using
        )
        return record

    def submit_many(
        self,
        submissions: Iterable[Submission],
        *,
        actor: str | None = None,
        using: Using | None = None,
    ) -> list[TaskRecord]:
        """Record many tasks at once, all or none: one ``TaskRecord`` per ``Submission``,
        in their order, written in one transaction (yours with ``using``, as ``submit``).

        Each submission means what the same arguments to ``submit`` mean, its
        ``dedupe_key`` included: a key already taken, or taken by an earlier submission of
        the batch, returns that task with ``deduplicated=True``. Every submission is
        checked before anything is written; bad input raises ``InvalidInput`` (or
        ``UnknownTask``) naming the submission by its index (from 0).
        """
        if isinstance(submissions, Submission | str | bytes | dict):
            raise InvalidInput("submissions must be a list of tasktrail.Submission")
        try:
            given = list(submissions)
        except TypeError:
            raise InvalidInput("submissions must be a list of tasktrail.Submission") from None
        now = self.store.clock()
        news = [self._checked(index, submission, now) for index, submission in enumerate(given)]
        if not news:
            return []
        return self._recorded(
            lambda conn: self.store.insert_tasks(news, actor=actor, conn=conn), using
        )

    def _recorded(
        self, insert: Callable[[Connection | None], list[TaskRecord]], using: Using | None
    ) -> list[TaskRecord]:
        """The tasks ``insert(conn)`` writes, in ``using``'s transaction if given (else
        the store's own), handed to the executor once that has committed."""
        if using is None:
            records = insert(None)
            self._dispatch(records)
            return records
        conn = _connection_of(using)
        records = insert(conn)
        self._dispatch_after_commit(using, conn, records)
        return records

    def _checked(self, index: int, submission: object, now: datetime) -> NewTask:
        """``submission`` (the ``index``-th of a batch) as a ``NewTask``, or the error of
        ``submit`` for it, naming it."""
        if not isinstance(submission, Submission):
            raise InvalidInput(
                f"submission {index} must be a tasktrail.Submission, "
                f"got {type(submission).__name__}"
            )
        try:
            return self._new_task(submission, now)
        except InvalidInput as error:
            # The same exception, UnknownTask stays UnknownTask, its message naming where.
            error.args = (f"submission {index}: {error}",)
            raise

    def _new_task(self, submission: Submission, now: datetime) -> NewTask:
        """``submission`` checked against its task's registration, or ``InvalidInput``."""
        if not isinstance(submission.name, str):
            raise InvalidInput(f"name must be a string, got {submission.name!r}")
        return new_task(
            self.registry.get(submission.name),
            submission.params,
            links=submission.links,
            dedupe_key=submission.dedupe_key,
            run=submission.run,
            max_attempts=submission.max_attempts,
            backoff=submission.backoff,
            queue=submission.queue,
            priority=submission.priority,
            run_after=submission.run_after,
            description=submission.description,
            now=now,
        )

    def run(self, task_id: str, *, actor: str | None = None) -> TaskRecord:
        """Queue a task submitted with ``run=False`` (``created → queued``, or ``scheduled``
        when its ``run_after`` is still ahead)."""
        current = self.store.get(task_id)
        transition = (
            SCHEDULE
            if current.run_after is not None and current.run_after > self.store.clock()
            else RUN
        )
        record = self.store.transition(
            task_id, transition, actor=actor, message="run", run_after=current.run_after
        )
        self._dispatch([record])
        return record

    def retry(
        self,
        task_id: str,
        *,
        only_failed_items: bool = False,
        force: bool = False,
        actor: str | None = None,
    ) -> TaskRecord:
        """Queue a failed, cancelled or partially failed task again, at once.

        The returned task is already ``queued`` with ``completed_at``, ``error`` and
        ``result`` cleared. ``only_failed_items`` keeps completed items done; ``force``
        also reruns a completed task. Anything else raises ``InvalidTransition``.
        """
        record = self.store.retry(
            task_id, only_failed_items=only_failed_items, force=force, actor=actor
        )
        self._dispatch([record])
        return record

    def cancel(
        self, task_id: str, *, reason: str | None = None, actor: str | None = None
    ) -> TaskRecord:
        """Cancel a task: at once if it is waiting; a running one is asked to stop and ends
        ``cancelled`` when its worker acknowledges. A finished task raises
        ``InvalidTransition``."""
        if reason is not None and not isinstance(reason, str):
            raise InvalidInput("reason must be a string")
        refuse_nul(reason, "reason")
        record = self.store.cancel(task_id, reason=reason, actor=actor)
        return self.executor.cancelled(record) or record

    def link(self, task_id: str, *links: Link) -> TaskRecord:
        """Link an existing task to more resources (existing links are left as they are)."""
        if not all(isinstance(link, Link) for link in links):
            raise InvalidInput("links must be tasktrail.Link values")
        return self.store.add_links(task_id, links)

    # -- reading ------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord:
        """The task with its links; ``TaskNotFound`` if there is none."""
        return self.store.get(task_id)

    def list_tasks(
        self,
        *,
        status: Status | str | Collection[Status | str] | None = None,
        name: str | None = None,
        queue: str | None = None,
        resource: tuple[str, str] | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """A page of tasks, newest first. Pass ``next_cursor`` back as ``cursor`` for more."""
        if not 1 <= limit <= 500:
            raise InvalidInput("limit must be from 1 to 500")
        return self.store.list_tasks(
            statuses=_statuses(status),
            name=name,
            queue=queue,
            resource=resource,
            cursor=cursor,
            limit=limit,
        )

    def tasks_for(
        self,
        resource_type: str,
        resource_id: str,
        *,
        active: bool | None = None,
        limit: int | None = None,
    ) -> list[TaskRecord]:
        """The tasks linked to the resource, newest first, each with its link ``role``: all
        of them, or the newest ``limit`` (at least 1); ``active=True`` only queued,
        scheduled and running ones, ``False`` only others."""
        if limit is not None and limit < 1:
            raise InvalidInput("limit must be at least 1")
        return self.store.tasks_for(resource_type, resource_id, active=active, limit=limit)

    def events(
        self,
        task_id: str | None = None,
        *,
        after: int = 0,
        limit: int = 1000,
        resource: tuple[str, str] | None = None,
    ) -> list[EventRecord]:
        """At most ``limit`` events after the cursor ``after``, oldest first: of one task,
        of the tasks linked to ``resource``, or of all. ``InvalidInput`` unless ``limit``
        is a whole number from 1."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"limit must be a whole number of at least 1, got {limit!r}")
        return self.store.events(task_id=task_id, resource=resource, after=after, limit=limit)

    def items(self, task_id: str) -> list[ItemRecord]:
        """A task's items, by key."""
        return self.store.items(task_id)

    def item_counts(self, task_id: str) -> ItemCounts:
        """How many of a task's items are in each status."""
        return self.store.item_counts(task_id)

    def status_check(self, resource_type: str, resource_id: str) -> StatusCheck:
        """The active tasks linked to the resource, and the items its stale probe reports
        in progress that no active task covers (none without a probe). A task that was
        killed or failed no longer covers anything, so its items show up as stale. A probe
        that raises or answers nonsense raises ``ProbeFailed`` (an ``InvalidInput``)."""
        probe = self.probes.get(resource_type)
        active = self.tasks_for(resource_type, resource_id, active=True)
        if probe is None:
            return StatusCheck(resource_type, resource_id, tuple(active), ())
        with probe_faults(probe):
            if probe.is_async:
                raw = asyncio.run(probe.function(resource_id))
            else:
                raw = probe.function(resource_id)
        return self._status_check(probe, resource_id, active, raw)

    def _status_check(
        self, probe: StaleProbe, resource_id: str, active: list[TaskRecord], raw: object
    ) -> StatusCheck:
        entries = checked_items(raw, probe)
        # The probe's answer may predate a task that ends while it runs, or postdate one
        # that starts: a task active in either read (before or after the probe) covers.
        before = active
        if entries:
            active = self.tasks_for(probe.resource_type, resource_id, active=True)
        covering = {task.id: task for task in (*before, *active)}.values()
        stale = uncovered(entries, probe, covering, self.store.has_active_task)
        return StatusCheck(probe.resource_type, resource_id, tuple(active), tuple(stale))

    # -- running in this thread ---------------------------------------------------------

    def run_pending(
        self, *, queues: Collection[str] | None = None, limit: int | None = None
    ) -> int:
        """Run queued tasks (and scheduled ones that are due) in the calling thread until
        none is left or ``limit`` have run; returns how many ran."""
        runner = Runner(self.store, self.registry, worker=self.worker_name)
        ran = 0
        while limit is None or ran < limit:
            self.store.promote_due(actor=self.worker_name)
            task = self.store.claim(worker=self.worker_name, queues=queues)
            if task is None:
                break
            runner.run(task)
            ran += 1
        return ran

    # -- async twins --------------------------------------------------------------------

    async def submit_async(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        using: AsyncUsing | None = None,
        **options: Any,
    ) -> TaskRecord:
        """Async version of ``submit``; ``using`` takes your ``AsyncConnection`` or
        ``AsyncSession``."""
        if using is None:
            return await asyncio.to_thread(self.submit, name, params, **options)

        def submit_in(sync: Any) -> TaskRecord:
            return self.submit(name, params, using=sync, **options)

        return await using.run_sync(submit_in)

    async def submit_many_async(
        self,
        submissions: Iterable[Submission],
        *,
        actor: str | None = None,
        using: AsyncUsing | None = None,
    ) -> list[TaskRecord]:
        """Async version of ``submit_many``; ``using`` takes your ``AsyncConnection`` or
        ``AsyncSession``."""
        if using is None:
            return await asyncio.to_thread(self.submit_many, submissions, actor=actor)

        def submit_in(sync: Any) -> list[TaskRecord]:
            return self.submit_many(submissions, actor=actor, using=sync)

        return await using.run_sync(submit_in)

    async def run_async(self, task_id: str, *, actor: str | None = None) -> TaskRecord:
        """Async version of ``run``."""
        return await asyncio.to_thread(self.run, task_id, actor=actor)

    async def retry_async(
        self,
        task_id: str,
        *,
        only_failed_items: bool = False,
        force: bool = False,
        actor: str | None = None,
    ) -> TaskRecord:
        """Async version of ``retry``."""
        return await asyncio.to_thread(
            self.retry, task_id, only_failed_items=only_failed_items, force=force, actor=actor
        )

    async def cancel_async(
        self, task_id: str, *, reason: str | None = None, actor: str | None = None
    ) -> TaskRecord:
        """Async version of ``cancel``."""
        return await asyncio.to_thread(self.cancel, task_id, reason=reason, actor=actor)

    async def link_async(self, task_id: str, *links: Link) -> TaskRecord:
        """Async version of ``link``."""
        return await asyncio.to_thread(self.link, task_id, *links)

    async def get_async(self, task_id: str) -> TaskRecord:
        """Async version of ``get``."""
        return await asyncio.to_thread(self.get, task_id)

    async def list_tasks_async(self, **filters: Any) -> Page:
        """Async version of ``list_tasks``."""
        return await asyncio.to_thread(lambda: self.list_tasks(**filters))

    async def tasks_for_async(
        self,
        resource_type: str,
        resource_id: str,
        *,
        active: bool | None = None,
        limit: int | None = None,
    ) -> list[TaskRecord]:
        """Async version of ``tasks_for``."""
        return await asyncio.to_thread(
            self.tasks_for, resource_type, resource_id, active=active, limit=limit
        )

    async def events_async(
        self,
        task_id: str | None = None,
        *,
        after: int = 0,
        limit: int = 1000,
        resource: tuple[str, str] | None = None,
    ) -> list[EventRecord]:
        """Async version of ``events``."""
        return await asyncio.to_thread(
            self.events, task_id, after=after, limit=limit, resource=resource
        )

    async def status_check_async(self, resource_type: str, resource_id: str) -> StatusCheck:
        """Async version of ``status_check``: an async probe runs on this event loop."""
        probe = self.probes.get(resource_type)
        if probe is None or not probe.is_async:
            return await asyncio.to_thread(self.status_check, resource_type, resource_id)
        active = await self.tasks_for_async(resource_type, resource_id, active=True)
        with probe_faults(probe):
            raw = await probe.function(resource_id)
        return await asyncio.to_thread(self._status_check, probe, resource_id, active, raw)

    async def item_counts_async(self, task_id: str) -> ItemCounts:
        """Async version of ``item_counts``."""
        return await asyncio.to_thread(self.item_counts, task_id)

    async def items_async(self, task_id: str) -> list[ItemRecord]:
        """Async version of ``items``."""
        return await asyncio.to_thread(self.items, task_id)

    async def run_pending_async(
        self, *, queues: Collection[str] | None = None, limit: int | None = None
    ) -> int:
        """Async version of ``run_pending``: async task functions run on this event loop."""
        runner = Runner(self.store, self.registry, worker=self.worker_name)
        ran = 0
        while limit is None or ran < limit:
            await asyncio.to_thread(self.store.promote_due, actor=self.worker_name)
            task = await asyncio.to_thread(self.store.claim, worker=self.worker_name, queues=queues)
            if task is None:
                break
            await runner.run_async(task)
            ran += 1
        return ran

    # -- dispatch -----------------------------------------------------------------------

    def _dispatch(self, records: Sequence[TaskRecord]) -> None:
        if waiting := _waiting(records):
            self.executor.dispatch(waiting)

    def _dispatch_committed(self, records: Sequence[TaskRecord]) -> None:
        """``_dispatch`` after the caller's COMMIT, which the store did not make: it tells
        the workers of other processes too."""
        if waiting := _waiting(records):
            self.store.wake_other_processes()
            self.executor.dispatch(waiting)

    def _dispatch_after_commit(
        self, using: Using, conn: Connection, records: Sequence[TaskRecord]
    ) -> None:
        if isinstance(using, Session):
            enqueue.defer_in_session(using, conn, self._dispatch_committed, records)
        else:
            enqueue.defer(conn, self._dispatch_committed, records)


def _waiting(records: Sequence[TaskRecord]) -> list[TaskRecord]:
    """The tasks of ``records`` that a worker will take (queued or scheduled, and new)."""
    return [r for r in records if r.status in _DISPATCHED and not r.deduplicated]


def _connection_of(using: Using) -> Connection:
    if isinstance(using, Session):
        return using.connection()
    if isinstance(using, Connection):
        return using
    raise InvalidInput("using must be a SQLAlchemy Connection or Session")


def _statuses(
    status: Status | str | Collection[Status | str] | None,
) -> list[Status] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    try:
        return [Status(value) for value in values]
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise InvalidInput(f"status must be one of {allowed}; got {values!r}") from None
