"""The tasktrail app that the benchmark's worker processes load
(``python -m tasktrail worker --app benchmarks.peers.tt_app:trail``).

The database comes from ``TASKTRAIL_DATABASE_URL``. With ``BENCH_COMMIT_LOG`` set, the
process appends how many transactions it committed to that file when it exits (how commits
per task are counted on SQLite, which has no ``pg_stat_database``).
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import sqlalchemy as sa

from benchmarks.peers.engines import bench_trail
from tasktrail import TaskContext

trail = bench_trail(os.environ.get("TASKTRAIL_DATABASE_URL"))
STEPS = (("one", 33.0), ("two", 66.0), ("three", 100.0))


@trail.task("bench.tracked", progress_interval=0)  # every step stored: the workload's rule
def tracked(ctx: TaskContext) -> None:
    """A no-op that reports three progress steps durably, then completes."""
    for step, percent in STEPS:
        ctx.progress(percent, step)


def count_commits(engine: sa.Engine, log: str) -> None:
    """Count ``engine``'s committed transactions and append the count to ``log`` at exit."""
    commits = [0]

    def on_commit(_conn: Any) -> None:
        commits[0] += 1

    sa.event.listen(engine, "commit", on_commit)
    atexit.register(lambda: _append(log, commits[0]))


def _append(log: str, count: int) -> None:
    with open(log, "a") as out:
        out.write(f"{count}\n")


if os.environ.get("BENCH_COMMIT_LOG"):
    count_commits(trail.engine, os.environ["BENCH_COMMIT_LOG"])
