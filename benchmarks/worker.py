"""What the embedded worker achieves: throughput of tasks that report three progress steps,
and the latency from submit to completion when the worker is idle."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

import sqlalchemy as sa

from tasktrail import TaskContext, Trail, Worker


@dataclass(frozen=True)
class Latency:
    """Submit → complete, in milliseconds, from the tasks' own timestamps."""

    p50: float
    p95: float


def bench_trail(url: str) -> Trail:
    """A Trail on ``url`` with the benchmark's tasks registered."""
    trail = Trail(url, auto_migrate=True)

    @trail.task("bench.steps", progress_interval=0)
    def steps(ctx: TaskContext) -> None:
        ctx.progress(33, "one")
        ctx.progress(66, "two")
        ctx.progress(100, "three")

    @trail.task("bench.noop")
    def noop(ctx: TaskContext) -> None:
        return None

    return trail


def throughput(trail: Trail, *, tasks: int, concurrency: int) -> float:
    """Tasks per second: ``tasks`` queued at once, drained by one worker."""
    with trail.engine.begin() as conn:
        for _ in range(tasks):
            trail.submit("bench.steps", using=conn)
    start = time.perf_counter()
    with Worker(trail, concurrency=concurrency):
        while trail.list_tasks(status=["queued", "running", "scheduled"], limit=1).items:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
    return tasks / elapsed


def latency(trail: Trail, submitter: Trail, *, samples: int) -> Latency:
    """Submit one task at a time through ``submitter`` to an idle worker on ``trail``.

    With ``submitter is trail`` the worker is woken in-process; a separate Trail stands
    for another process (PostgreSQL NOTIFY, or polling on SQLite).
    """
    millis = []
    pauses = random.Random(7)
    with Worker(trail, concurrency=4):
        time.sleep(0.2)
        for _ in range(samples):
            task = submitter.submit("bench.noop")
            while (done := trail.get(task.id)).completed_at is None:
                time.sleep(0.002)
            millis.append((done.completed_at - done.created_at).total_seconds() * 1000)
            # Idle for a while, at no fixed phase to the worker's polling (if it polls).
            time.sleep(pauses.uniform(0.05, 0.6))
    cuts = statistics.quantiles(millis, n=20)
    return Latency(p50=statistics.median(millis), p95=cuts[18])


def clear(trail: Trail) -> None:
    """Delete every task (between runs, so each starts from an empty table)."""
    with trail.engine.begin() as conn:
        for table in ("tasktrail_events", "tasktrail_items", "tasktrail_links", "tasktrail_tasks"):
            conn.execute(sa.table(table).delete())
