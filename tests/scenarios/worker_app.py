"""The app that worker processes in the scenarios load: ``--app tests.scenarios.worker_app:trail``.

Its ``trail`` is built on first access from ``TASKTRAIL_DATABASE_URL``, so tests can import
this module for ``register`` without opening a database.
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa

from tasktrail import TaskContext, Trail

SIDE_EFFECTS = sa.table(
    "scenario_side_effects", sa.column("n", sa.Integer), sa.column("pid", sa.Integer)
)
_trail: Trail | None = None


def create_side_effects(trail: Trail) -> None:
    """The table in which ``scenario.record`` leaves its mark, once per run."""
    with trail.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scenario_side_effects (n INTEGER NOT NULL, pid INTEGER)")


def register(trail: Trail) -> None:
    """Register the scenario tasks on ``trail``."""

    @trail.task("scenario.record")
    def record(ctx: TaskContext, n: int) -> int:
        with trail.engine.begin() as conn:
            conn.execute(sa.insert(SIDE_EFFECTS).values(n=n, pid=os.getpid()))
        return n

    @trail.task("scenario.gated", max_attempts=2, backoff=0.1)
    def gated(ctx: TaskContext, gate: str) -> dict[str, int]:
        ctx.progress(10, "waiting for the gate file")
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"attempt": ctx.attempt, "pid": os.getpid()}


def __getattr__(name: str) -> Trail:
    global _trail
    if name != "trail":
        raise AttributeError(name)
    if _trail is None:
        _trail = Trail(os.environ["TASKTRAIL_DATABASE_URL"])
        register(_trail)
    return _trail
