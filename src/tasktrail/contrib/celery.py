"""Celery as tasktrail's executor: the same task functions, tracked the same way, run in
``celery worker`` processes on as many machines as you like.

::

    celery_app = Celery("app", broker="redis://localhost:6379/0")
    trail = Trail("postgresql+psycopg://…", executor=CeleryExecutor(celery_app))

    @trail.task("report.build")
    def build(ctx: TaskContext, report_id: str) -> None: ...

    # celery -A myapp.tasks:celery_app worker -Q default

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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_process_init

from tasktrail.errors import TaskNotFound
from tasktrail.executor import Executor
from tasktrail.records import TaskRecord
from tasktrail.runner import Runner
from tasktrail.states import Status

if TYPE_CHECKING:
    from tasktrail.trail import Trail

logger = logging.getLogger("tasktrail.celery")

RUN_TASK_NAME = "tasktrail.run"
#: tasktrail's queue of this name maps to the Celery app's default queue.
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
    commit of the task it names.
    """

    def __init__(
        self,
        app: Celery,
        *,
        terminate_on_cancel: bool = False,
        missing_task_retries: int = 20,
    ) -> None:
        self.app = app
        self.terminate_on_cancel = terminate_on_cancel
        self.missing_task_retries = missing_task_retries
        self._trail: Trail | None = None
        self._run_task: Any = None

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

        worker_process_init.connect(forget_inherited_connections, weak=False)
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

    def cancelled(self, task: TaskRecord) -> None:
        """Revoke the waiting message of a cancelled task, or terminate a running one if
        ``terminate_on_cancel``."""
        try:
            if task.status is Status.CANCELLED:
                # It was waiting; its message went out at the version before the cancel.
                self.app.control.revoke(celery_id(task.id, task.version - 1))
            elif task.status is Status.RUNNING and self.terminate_on_cancel and task.external_id:
                self.app.control.revoke(task.external_id, terminate=True, signal="SIGTERM")
        except Exception:
            # Revoking is an optimisation: a stale message is refused at claim time anyway.
            logger.warning("could not revoke task %s", task.id, exc_info=True)

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
        ended = runner.run(claimed)
        if ended is None:
            return "superseded"
        if ended.status is Status.SCHEDULED:
            self.dispatch([ended])
        return str(ended.status)
