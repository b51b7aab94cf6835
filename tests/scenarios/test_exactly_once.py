"""Two worker processes draining one database: every task runs exactly once."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tasktrail import Trail
from tasktrail.schema import tasks
from tests.scenarios.processes import WorkerProcess, wait_for
from tests.scenarios.worker_app import SIDE_EFFECTS, create_side_effects

pytestmark = pytest.mark.slow
TASKS = 2000


def test_every_task_runs_exactly_once_across_worker_processes(
    app: Trail, start_worker: Callable[..., WorkerProcess]
) -> None:
    create_side_effects(app)
    with app.engine.begin() as conn:
        for n in range(TASKS):
            app.submit("scenario.record", {"n": n}, using=conn)

    workers = [start_worker("--concurrency", "4") for _ in range(2)]
    wait_for(
        lambda: not app.list_tasks(status=["queued", "scheduled", "running"], limit=1).items,
        timeout=240,
        what="every task to end",
    )
    for worker in workers:
        worker.signal(signal.SIGTERM)
    assert [worker.wait() for worker in workers] == [0, 0]

    with app.engine.connect() as conn:
        counted = sa.select(SIDE_EFFECTS.c.n, sa.func.count()).group_by(SIDE_EFFECTS.c.n)
        runs = dict(conn.execute(counted).tuples().all())
        pids = set(conn.execute(sa.select(SIDE_EFFECTS.c.pid).distinct()).scalars())
        outcomes = conn.execute(
            sa.select(tasks.c.status, tasks.c.attempts, sa.func.count()).group_by(
                tasks.c.status, tasks.c.attempts
            )
        ).all()
    assert runs == dict.fromkeys(range(TASKS), 1)
    assert [tuple(row) for row in outcomes] == [("completed", 1, TASKS)]
    # Both processes took part, so the claims really competed.
    assert pids == {worker.pid for worker in workers}
