"""The tasktrail app that the benchmark's worker processes load
(``python -m tasktrail worker --app benchmarks.peers.tt_app:trail``).

The database comes from ``TASKTRAIL_DATABASE_URL``. With ``BENCH_COMMIT_LOG`` set, a
process on SQLite appends how many transactions it committed to that file when it exits
(how commits per task are counted there; PostgreSQL has ``pg_stat_database``).
"""

from __future__ import annotations

import atexit
import os

from benchmarks.peers.engines import SQLiteCommits, bench_trail
from tasktrail import TaskContext

trail = bench_trail(os.environ.get("TASKTRAIL_DATABASE_URL"))
STEPS = (("one", 33.0), ("two", 66.0), ("three", 100.0))


@trail.task("bench.tracked", progress_interval=0)  # every step stored: the workload's rule
def tracked(ctx: TaskContext) -> None:
    """A no-op that reports three progress steps durably, then completes."""
    for step, percent in STEPS:
        ctx.progress(percent, step)


def _append(log: str, commits: SQLiteCommits) -> None:
    with open(log, "a") as out:
        out.write(f"{commits.count}\n")


if os.environ.get("BENCH_COMMIT_LOG") and trail.engine.dialect.name == "sqlite":
    atexit.register(_append, os.environ["BENCH_COMMIT_LOG"], SQLiteCommits(trail.engine))
