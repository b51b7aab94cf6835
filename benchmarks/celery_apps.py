"""The two Celery apps the Celery benchmark compares, loaded by ``celery worker -A``.

- ``plain_app``: Celery alone; progress through ``update_state`` into the result backend
  (``BENCH_RESULT_BACKEND``: Redis by default, or a database).
- ``tracked_app``: Celery through tasktrail; progress, results and history in PostgreSQL
  (``TASKTRAIL_DATABASE_URL``).

The workload is the same: a no-op task that reports three progress steps, then returns.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from tasktrail import TaskContext, Trail
from tasktrail.contrib.celery import CeleryExecutor

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
RESULT_BACKEND = os.environ.get("BENCH_RESULT_BACKEND", "redis://127.0.0.1:6379/14")
STEPS = ("fetch", "transform", "store")


def _configure(app: Celery) -> Celery:
    app.conf.update(
        worker_prefetch_multiplier=4,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def make_plain_app(result_backend: str) -> Celery:
    """Celery alone, storing results and ``update_state`` progress in ``result_backend``.
    The worker and the client must build it with the same backend."""
    app = _configure(Celery("bench_plain", broker=BROKER_URL, backend=result_backend))

    def plain(task: Any, n: int) -> int:
        for done, step in enumerate(STEPS, start=1):
            task.update_state(state="PROGRESS", meta={"progress": done * 30, "step": step})
        return n

    app.task(name=PLAIN_TASK, bind=True)(plain)
    return app


PLAIN_TASK = "bench.plain"
plain_app = make_plain_app(RESULT_BACKEND)


def make_tracked_app() -> Celery:
    """A Celery app for tasktrail's executor (no result backend: tasktrail stores results).
    Each Trail needs one of its own: its executor registers ``tasktrail.run`` on it."""
    return _configure(Celery("bench_tracked", broker=BROKER_URL))


tracked_app = make_tracked_app()


def tracked_trail(database_url: str, app: Celery = tracked_app) -> Trail:
    """The tasktrail side: a Trail on ``database_url`` sending its tasks to ``app``."""
    trail = Trail(database_url, executor=CeleryExecutor(app), auto_migrate=True)

    @trail.task("bench.tracked", progress_interval=0)
    def tracked(ctx: TaskContext, n: int) -> int:
        for done, step in enumerate(STEPS, start=1):
            ctx.progress(done * 30, step)
        return n

    return trail


if os.environ.get("TASKTRAIL_DATABASE_URL"):
    trail = tracked_trail(os.environ["TASKTRAIL_DATABASE_URL"])
