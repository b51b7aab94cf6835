"""Test task functions, and a Celery app for tests that start real ``celery worker`` processes:
``celery -A tests.support.celery_app:celery_app worker``. The database comes from
TASKTRAIL_DATABASE_URL and the broker from TASKTRAIL_TEST_REDIS_URL."""

from __future__ import annotations

import os
import time

import sqlalchemy as sa
from celery import Celery

from tasktrail import TaskContext, Trail
from tasktrail.contrib.celery import CeleryExecutor

BROKER_URL = os.environ.get("TASKTRAIL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

side_effects = sa.Table(
    "test_side_effects",
    sa.MetaData(),
    sa.Column("task_id", sa.String(32), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)


def make_celery(broker_url: str = BROKER_URL) -> Celery:
    """A Celery app configured the way the tests run it."""
    app = Celery("tasktrail_tests", broker=broker_url)
    app.conf.update(
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={"socket_connect_timeout": 2},
    )
    return app


def make_trail(
    database_url: str, broker_url: str = BROKER_URL, *, terminate_on_cancel: bool = False
) -> Trail:
    """A Trail on ``database_url`` that runs its tasks in Celery workers."""
    redispatch_after = float(os.environ.get("TASKTRAIL_TEST_REDISPATCH_AFTER", "60"))
    executor = CeleryExecutor(
        make_celery(broker_url),
        redispatch_after=redispatch_after,
        terminate_on_cancel=terminate_on_cancel,
    )
    trail = Trail(database_url, executor=executor)
    register(trail)
    return trail


def register(trail: Trail) -> None:
    """The test task functions."""

    @trail.task("celery.record")
    def record(ctx: TaskContext, n: int) -> int:
        ctx.progress(50, "recording")
        with trail.engine.begin() as conn:
            conn.execute(side_effects.insert().values(task_id=ctx.task_id, pid=os.getpid()))
        return n

    @trail.task("celery.long", max_attempts=2, backoff=0.1)
    def long(ctx: TaskContext, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        step = 0
        while time.monotonic() < deadline:
            step += 1
            ctx.progress(min(99, step), "working")
            time.sleep(0.05)
        return "finished"

    @trail.task("celery.stubborn")
    def stubborn(ctx: TaskContext, seconds: float) -> str:
        time.sleep(seconds)  # never looks at cancellation
        return "too late"

    @trail.task("celery.fails_twice", max_attempts=1)
    def fails_twice(ctx: TaskContext) -> int:
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} failed")
        return ctx.attempt

    @trail.task("celery.flaky", max_attempts=3, backoff=0.2)
    def flaky(ctx: TaskContext) -> int:
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt} failed")
        return ctx.attempt

    @trail.task("celery.fails_at_gate", max_attempts=2, backoff=0.2)
    def fails_at_gate(ctx: TaskContext, gate: str) -> int:
        if ctx.attempt == 1:
            while not os.path.exists(gate):  # the test decides when the first attempt fails
                time.sleep(0.05)
            raise ConnectionError("attempt 1 failed")
        with trail.engine.begin() as conn:
            conn.execute(side_effects.insert().values(task_id=ctx.task_id, pid=os.getpid()))
        return ctx.attempt


if os.environ.get("TASKTRAIL_DATABASE_URL"):
    trail = make_trail(os.environ["TASKTRAIL_DATABASE_URL"])
    executor = trail.executor
    assert isinstance(executor, CeleryExecutor)
    celery_app = executor.app
