"""Workload "tracked lifecycle": no-op tasks that each report three progress steps
durably, then complete, on tasktrail (SQLite and PostgreSQL) and Procrastinate
(PostgreSQL), with each database's committed-UPDATE baseline measured in the same run.

Every system runs the same way: tasks are submitted one at a time from this process, then
two worker processes (each with concurrency ``CONCURRENCY``) drain them. Throughput counts
from the first completed task to the last, so process start-up is left out. Then as many
tasks again are submitted in batches of ``BATCH``, each batch in one call (tasktrail's
``submit_many``, Procrastinate's ``batch_defer``), and left queued.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from benchmarks.databases import POSTGRES_URL, committed_updates_per_second
from benchmarks.peers.engines import SQLiteCommits, bench_trail
from tasktrail import Submission, TaskRecord, Trail

WORKERS = 2
BATCH = 100
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "2"))
POLL = 0.1
LATENCY_POLL = 0.002


@dataclass(frozen=True)
class Figures:
    """One system's figures from one run."""

    system: str
    database: str
    submit_per_s: float
    bulk_submit_per_s: float
    tasks_per_s: float
    p50_ms: float
    p95_ms: float
    commits_per_task: float
    baseline_updates_per_s: float


def libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def xact_commits(url: str) -> int:
    """``pg_stat_database.xact_commit`` of ``url``'s database, read from another database so
    that reading it does not count; waits a moment for exited backends to flush stats."""
    time.sleep(1.2)
    name = sa.make_url(url).database
    with driver_connection(POSTGRES_URL) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def processes(command: list[str], env: dict[str, str], count: int = WORKERS) -> Iterator[None]:
    """``count`` copies of ``command`` running until the block ends (then SIGTERM, wait)."""
    children = [
        subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck worker
                child.kill()
                child.wait()


def drain_rate(done: Callable[[], int], total: int, timeout: float = 1800) -> float:
    """Tasks per second from the first finished task until ``done() == total``."""
    deadline = time.monotonic() + timeout
    while (first := done()) == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("no task finished")
        time.sleep(POLL / 10)
    start = time.perf_counter()
    while done() < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done()} of {total} tasks finished")
        time.sleep(POLL)
    return (total - first) / (time.perf_counter() - start)


def quantiles(millis: list[float]) -> tuple[float, float]:
    """p50 and p95."""
    return statistics.median(millis), statistics.quantiles(millis, n=20)[18]


def pauses() -> Iterator[float]:
    """Idle pauses between latency samples, at no fixed phase to any polling."""
    rng = random.Random(7)
    while True:
        yield rng.uniform(0.02, 0.15)


def idle_latencies(samples: int, sample: Callable[[], float]) -> list[float]:
    """``samples`` results of ``sample()`` (one task submitted and waited for: its submit →
    terminal time in ms), one task at a time, each followed by the next of ``pauses()``."""
    millis = []
    for pause, _ in zip(pauses(), range(samples), strict=False):
        millis.append(sample())
        time.sleep(pause)
    return millis


#: The look a latency sample takes every ``LATENCY_POLL``: one indexed read, as cheap as
#: Procrastinate's, so that the waiting client takes no more CPU from the 2 cores than
#: it does there (``Trail.get`` builds the whole record with its links, several times
#: this query's cost, 500 times a second).
_ENDED = "SELECT completed_at IS NOT NULL FROM tasktrail_tasks WHERE id = {}"


@contextmanager
def driver_connection(url: str) -> Iterator[Any]:
    """A DB-API connection of its own to ``url`` (sqlite3's or psycopg's) in autocommit
    mode, away from any ``Trail``'s pool: each statement sees the latest commits; closed at
    the end."""
    if sa.make_url(url).get_backend_name() == "sqlite":
        lite = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None, timeout=30)
        try:
            yield lite
        finally:
            lite.close()
        return
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        yield conn


def _placeholder(url: str) -> str:
    """The parameter marker of ``driver_connection``'s driver for ``url``."""
    return "?" if sa.make_url(url).get_backend_name() == "sqlite" else "%s"


@contextmanager
def watching(url: str) -> Iterator[Callable[[str], bool]]:
    """Whether a task of the tasktrail database at ``url`` has ended, looked up as
    Procrastinate's samples are watched: on a driver connection of its own in autocommit
    mode, each look one statement that sees the latest commits, away from the pool of the
    ``Trail`` under test (a look that ended its transaction with a ``ROLLBACK`` on a pooled
    connection made psycopg forget that connection's prepared statements, and the next
    submit on it was parsed and planned anew)."""
    look = _ENDED.format(_placeholder(url))
    with driver_connection(url) as conn:
        yield lambda task_id: bool(conn.execute(look, (task_id,)).fetchone()[0])


def tasktrail_latency(trail: Trail, task: TaskRecord, ended: Callable[[str], bool]) -> float:
    """Poll ``ended`` (see ``watching``) every ``LATENCY_POLL`` seconds until ``task`` (just
    submitted) ends: its ``created_at`` → ``completed_at`` in ms (tasktrail's own
    timestamps)."""
    while not ended(task.id):
        time.sleep(LATENCY_POLL)
    record = trail.get(task.id)
    assert record.completed_at is not None
    return (record.completed_at - record.created_at).total_seconds() * 1e3


# -- tasktrail ----------------------------------------------------------------------------


def tasktrail_worker_command() -> list[str]:
    """The documented worker command, on the benchmark's app module."""
    return [sys.executable, "-m", "tasktrail", "worker", "--app",
            "benchmarks.peers.tt_app:trail", "--concurrency", str(CONCURRENCY)]  # fmt: skip


def tasktrail_run(url: str, *, tasks: int, samples: int) -> Figures:
    """The lifecycle on tasktrail at ``url`` (a fresh database)."""
    dialect = sa.make_url(url).get_backend_name()
    baseline = committed_updates_per_second(url)
    trail = bench_trail(url, auto_migrate=True)
    trail.task("bench.tracked")(lambda ctx: None)  # submit-side registration only
    done_sql = "SELECT count(*) FROM tasktrail_tasks WHERE status = 'completed'"
    with tempfile.TemporaryDirectory() as scratch:
        log = str(Path(scratch) / "commits")
        env = {"TASKTRAIL_DATABASE_URL": url, "BENCH_COMMIT_LOG": log}
        count_done = _counter(url, done_sql)
        try:
            with processes(tasktrail_worker_command(), env), watching(url) as ended:
                time.sleep(2)
                millis = idle_latencies(
                    samples,
                    lambda: tasktrail_latency(trail, trail.submit("bench.tracked"), ended),
                )
            with trail.engine.begin() as conn:
                for table in ("events", "links", "items", "tasks"):
                    conn.execute(sa.table(f"tasktrail_{table}").delete())
            Path(log).unlink(missing_ok=True)
            counter = SQLiteCommits(trail.engine) if dialect == "sqlite" else None
            trail.engine.dispose()
            before = xact_commits(url) if dialect == "postgresql" else 0
            start = time.perf_counter()
            for _ in range(tasks):
                trail.submit("bench.tracked")
            submit_rate = tasks / (time.perf_counter() - start)
            submit_commits = 0 if counter is None else counter.count
            trail.engine.dispose()
            polls = [0]
            with processes(tasktrail_worker_command(), env):
                rate = drain_rate(lambda: count_done(polls), tasks)
            if dialect == "postgresql":
                commits = xact_commits(url) - before - polls[0]
            else:
                commits = submit_commits + sum(int(n) for n in Path(log).read_text().split())
            batch = [Submission("bench.tracked")] * BATCH
            bulk_rate = bulk_submit_rate(tasks, lambda: trail.submit_many(batch))
        finally:
            trail.close()
    p50, p95 = quantiles(millis)
    return Figures(f"tasktrail ({dialect})", dialect, submit_rate, bulk_rate, rate, p50, p95,
                   commits / tasks, baseline)  # fmt: skip


def bulk_submit_rate(tasks: int, submit_batch: Callable[[], object]) -> float:
    """Tasks per second submitted by ``tasks // BATCH`` calls of ``submit_batch``, which
    submits ``BATCH`` tasks at once."""
    start = time.perf_counter()
    for _ in range(tasks // BATCH):
        submit_batch()
    return tasks // BATCH * BATCH / (time.perf_counter() - start)


def _counter(url: str, sql: str) -> Callable[[list[int]], int]:
    """A function running ``sql`` (a count) on a connection of its own, one transaction per
    call, adding one to ``polls[0]`` each time on PostgreSQL (to subtract its commits from
    ``pg_stat_database``'s)."""
    postgresql = sa.make_url(url).get_backend_name() == "postgresql"

    def count(polls: list[int]) -> int:
        with driver_connection(url) as conn:
            if postgresql:
                polls[0] += 1
            return int(conn.execute(sql).fetchone()[0])

    return count


# -- Procrastinate ------------------------------------------------------------------------


def procrastinate_run(url: str, *, tasks: int, samples: int) -> Figures:
    """The lifecycle on Procrastinate at ``url`` (a fresh PostgreSQL database)."""
    os.environ["BENCH_PROCRASTINATE_DSN"] = dsn = libpq(url)
    from procrastinate import PsycopgConnector

    from benchmarks.peers import proc_app

    baseline = committed_updates_per_second(url)
    with proc_app.app.replace_connector(PsycopgConnector(conninfo=dsn)) as app:
        return _procrastinate_run(app, url, tasks=tasks, samples=samples, baseline=baseline)


def _procrastinate_run(app: Any, url: str, *, tasks: int, samples: int, baseline: float) -> Figures:
    from benchmarks.peers import proc_app

    dsn = libpq(url)
    command = [sys.executable, "-m", "procrastinate", "--app=benchmarks.peers.proc_app.app",
               "worker", f"--concurrency={CONCURRENCY}"]  # fmt: skip
    env = {"BENCH_PROCRASTINATE_DSN": dsn}
    done_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
    count_done = _counter(url, done_sql)
    with app.open():
        app.schema_manager.apply_schema()
        with driver_connection(url) as conn:
            conn.execute(proc_app.PROGRESS_TABLE)
        task = app.tasks["bench.tracked"]
        with processes(command, env), driver_connection(url) as watch:
            time.sleep(2)
            millis = idle_latencies(samples, lambda: _procrastinate_latency(watch, task.defer()))
            watch.execute("TRUNCATE procrastinate_jobs, bench_progress CASCADE")
    before = xact_commits(url)
    with app.open():
        start = time.perf_counter()
        for _ in range(tasks):
            task.defer()
        submit_rate = tasks / (time.perf_counter() - start)
    polls = [0]
    with processes(command, env):
        rate = drain_rate(lambda: count_done(polls), tasks)
    commits = xact_commits(url) - before - polls[0]
    with app.open():
        bulk_rate = bulk_submit_rate(tasks, lambda: task.batch_defer(*[{}] * BATCH))
    p50, p95 = quantiles(millis)
    return Figures("Procrastinate", "postgresql", submit_rate, bulk_rate, rate, p50, p95,
                   commits / tasks, baseline)  # fmt: skip


def _procrastinate_latency(watch: psycopg.Connection[Any], job_id: int) -> float:
    """Poll the events of job ``job_id`` (just deferred) on ``watch`` every
    ``LATENCY_POLL`` seconds until it succeeds: its ``deferred`` → ``succeeded`` in ms."""
    while True:
        row = watch.execute(
            "SELECT max(at) - min(at) FROM procrastinate_events"
            " WHERE job_id = %s AND type IN ('deferred', 'succeeded')"
            " HAVING count(*) = 2",
            (job_id,),
        ).fetchone()
        if row is not None:
            return float(row[0].total_seconds() * 1e3)
        time.sleep(LATENCY_POLL)
