"""Celery as tasktrail's executor: the same task functions, tracked the same way, run in
``celery worker`` processes on as many machines as you like.

::

    celery_app = Celery("app", broker="redis://localhost:6379/0")
    trail = Trail("postgresql+psycopg://…", executor=CeleryExecutor(celery_app))

    @trail.task("report.build")
    def build(ctx: TaskContext, report_id: str) -> None: ...

    # celery -A myapp.tasks:celery_app worker              (tasktrail's "default" queue)
    # celery -A myapp.tasks:celery_app worker -Q celery,reports   (and its "reports" queue)

tasktrail's ``default`` queue is sent to the Celery app's default queue
(``task_default_queue``, ``celery`` unless you change it), the one a ``celery worker``
without ``-Q`` consumes; any other tasktrail queue is the Celery queue of the same name.

tasktrail stays the source of truth: a Celery message only says "task X may be ready".
The worker claims X with a compare-and-set, so a duplicate message never runs a task twice,
and a message that never arrives is re-sent by the reaper. Retries are tasktrail's own
(attempts, backoff), sent as Celery messages with an ``eta``; Celery's retry counter is not
used. Messages are acknowledged early: recovering a run whose worker died is the reaper's
job, because Celery acknowledges even late-ack messages when a pool process is killed.

The Celery task id of a task's first dispatch is the tasktrail id, so Flower and
``celery inspect`` show the same ids. Later dispatches of the same task (after a retry, a
backoff, a re-send) are ``<id>.<version>``: Celery remembers revoked ids for hours, and a
retry must not be mistaken for the message a cancel revoked.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from tasktrail.errors import RunSuperseded, TaskNotFound
from tasktrail.executor import Executor
from tasktrail.records import TaskRecord
from tasktrail.runner import Runner
from tasktrail.settings import heartbeat_settings, positive
from tasktrail.states import CANCEL, Status

if TYPE_CHECKING:
    from tasktrail.trail import Trail

logger = logging.getLogger("tasktrail.celery")

RUN_TASK_NAME = "tasktrail.run"
#: tasktrail's queue of this name maps to the Celery app's default queue (``celery``
#: unless ``task_default_queue`` says otherwise); other queues map by name.
DEFAULT_QUEUE = "default"
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}


def celery_id(task_id: str, version: int) -> str:
    """The Celery task id of the message that dispatches ``task_id`` at row ``version``."""
    return task_id if version == 1 else f"{task_id}.{version}"


class CeleryExecutor(Executor):
    """Send tasktrail tasks to Celery workers.

    ``terminate_on_cancel`` also kills a running task's pool process when it is cancelled
    (Celery's ``revoke(terminate=True)``); by default cancelling is cooperative, as with
    the embedded worker. ``missing_task_retries`` covers a message that overtakes the
    commit of the task it names. Heartbeat settings default to
    ``TASKTRAIL_HEARTBEAT_INTERVAL`` / ``TASKTRAIL_HEARTBEAT_TIMEOUT``; a queued task that
    nothing happened to for ``redispatch_after`` seconds is sent again, and so is a
    scheduled task still unclaimed that long after its ``run_after``.
    """

    def __init__(
        self,
        app: Celery,
        *,
        terminate_on_cancel: bool = False,
        missing_task_retries: int = 20,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        redispatch_after: float = 60.0,
    ) -> None:
        self.app = app
        self.terminate_on_cancel = terminate_on_cancel
        self.missing_task_retries = missing_task_retries
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_settings(
            heartbeat_interval, heartbeat_timeout
        )
        self.redispatch_after = positive("redispatch_after", redispatch_after)
        self._trail: Trail | None = None
        self._run_task: Any = None
        self._reaper_stop = threading.Event()

    @property
    def trail(self) -> Trail:
        """The Trail this executor serves."""
        if self._trail is None:
            raise RuntimeError("this CeleryExecutor is not attached to a Trail yet")
        return self._trail

    def attach(self, trail: Trail) -> None:
        """Register the Celery task that runs tasktrail tasks on ``app``."""
        self._trail = trail
        executor = self

        def run(celery_task: Any, task_id: str) -> str:
            return executor.run_message(celery_task, task_id)

        def forget_inherited_connections(**_: Any) -> None:
            # A prefork child must not share the parent's pooled connections.
            trail.engine.dispose(close=False)

        def start_reaper(**_: Any) -> None:
            threading.Thread(target=executor.reap_forever, name="tasktrail-reaper",
                             daemon=True).start()  # fmt: skip

        def stop_reaper(**_: Any) -> None:
            executor._reaper_stop.set()

        worker_process_init.connect(forget_inherited_connections, weak=False)
        worker_ready.connect(start_reaper, weak=False)
        worker_shutdown.connect(stop_reaper, weak=False)
        register = self.app.task(name=RUN_TASK_NAME, bind=True, ignore_result=True,
                                 acks_late=False)  # fmt: skip
        self._run_task = register(run)

    def celery_queue(self, queue: str) -> str:
        """The Celery queue that tasktrail's ``queue`` is sent to."""
        if queue == DEFAULT_QUEUE:
            return str(self.app.conf.task_default_queue)
        return queue

    def dispatch(self, tasks: Sequence[TaskRecord]) -> None:
        """Send one message per task; a scheduled task's message carries its ``eta``."""
        for task in tasks:
            options: dict[str, Any] = {
                "task_id": celery_id(task.id, task.version),
                "queue": self.celery_queue(task.queue),
            }
            if task.status is Status.SCHEDULED and task.run_after is not None:
                options["eta"] = task.run_after
            try:
                self._run_task.apply_async(
                    args=(task.id,), retry=True, retry_policy=_PUBLISH_RETRY, **options
                )
            except Exception as exc:
                # The task is recorded and stays queued: the reaper re-sends it. A web
                # request that submitted it should not wait for the broker to come back.
                logger.warning("could not send task %s to Celery (%s); it will be re-sent",
                               task.id, exc)  # fmt: skip

    def cancelled(self, task: TaskRecord) -> TaskRecord | None:
        """Revoke the waiting message of a cancelled task, or terminate a running one if
        ``terminate_on_cancel``."""
        try:
            if task.status is Status.CANCELLED:
                # It was waiting; its message went out at the version before the cancel.
                self.app.control.revoke(celery_id(task.id, task.version - 1))
            elif task.status is Status.RUNNING and self.terminate_on_cancel and task.external_id:
                self.app.control.revoke(task.external_id, terminate=True, signal="SIGKILL")
                # The killed run can never acknowledge, and the reaper would retry it.
                return self.trail.store.transition(
                    task.id,
                    CANCEL,
                    attempt=task.attempts,
                    actor="celery",
                    message="terminated: its pool process was killed",
                )
        except RunSuperseded:
            pass  # the run ended on its own meanwhile
        except Exception:
            # Revoking is an optimisation: a stale message is refused at claim time anyway.
            logger.warning("could not revoke task %s", task.id, exc_info=True)
        return None

    def run_message(self, celery_task: Any, task_id: str) -> str:
        """Handle one Celery message: claim the task, run it, and dispatch its next
        attempt if it backed off. Returns what happened, for Celery's logs."""
        trail = self.trail
        worker = f"{celery_task.request.hostname or socket.gethostname()}:{os.getpid()}"
        try:
            claimed = trail.store.claim_task(
                task_id, worker=worker, external_id=celery_task.request.id
            )
        except TaskNotFound:
            # The submitting transaction may not have committed yet.
            raise celery_task.retry(countdown=0.2, max_retries=self.missing_task_retries) from None
        if claimed is None:
            current = trail.store.get(task_id)
            if current.status is Status.SCHEDULED:
                self.dispatch([current])  # arrived before its eta (clock skew): wait again
            return f"not claimable: {current.status}"
        runner = Runner(trail.store, trail.registry, worker=worker)
        with self._beating(worker, claimed.id):
            ended = runner.run(claimed)
        if ended is None:
            return "superseded"
        if ended.status is Status.SCHEDULED:
            self.dispatch([ended])
        return str(ended.status)

    @contextmanager
    def _beating(self, worker: str, task_id: str) -> Iterator[None]:
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    self.trail.store.heartbeat(worker, [task_id])
                except Exception:
                    logger.warning("heartbeat for task %s failed", task_id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"tasktrail-beat-{task_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def reap_once(self) -> None:
        """Take back runs whose worker went silent, and recover tasks whose message seems
        lost: a scheduled task still unclaimed ``redispatch_after`` seconds after its
        ``run_after`` is moved to queued, and a queued task untouched for as long is sent
        again. Safe with many reapers at once; a duplicate message is refused at claim."""
        store = self.trail.store
        actor = f"reaper:{socket.gethostname()}:{os.getpid()}"
        reaped = store.reap_lost(self.heartbeat_timeout, actor=actor)
        self.dispatch([task for task in reaped if task.status is Status.SCHEDULED])
        # A scheduled task's eta message may have been lost too (the broker was down when
        # it was sent, or the worker holding it until its eta died); nothing else runs it.
        self.dispatch(store.promote_due(actor=actor, overdue_by=self.redispatch_after))
        self.dispatch(store.touch_stale_queued(self.redispatch_after))

    def reap_forever(self) -> None:
        """Run ``reap_once`` every heartbeat interval until the Celery worker shuts down;
        started in each worker's main process when it is ready."""
        while not self._reaper_stop.wait(self.heartbeat_interval):
            try:
                self.reap_once()
            except Exception:
                logger.warning("the reaper failed; it will try again", exc_info=True)
