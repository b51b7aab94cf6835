"""A worker process killed with SIGKILL mid-task: the reaper in a surviving worker gives the
task back and the survivor runs it to the end."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tasktrail import Status, Trail
from tests.scenarios.processes import HEARTBEAT, WorkerProcess, wait_for

pytestmark = pytest.mark.slow
#: Seconds allowed beyond the promised deadline: scheduling noise on a busy machine.
RECOVERY_SLACK = 1.5


def test_a_killed_workers_task_is_recovered_by_a_survivor(
    app: Trail, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    workers = {worker.pid: worker for worker in (start_worker(), start_worker())}
    gate = tmp_path / "gate"
    task = app.submit("scenario.gated", {"gate": str(gate)})
    running = wait_for(
        lambda: (t := app.get(task.id)).progress > 0 and t.status is Status.RUNNING and t,
        timeout=30,
        what="the task to start",
    )
    assert running.worker is not None
    victim = workers.pop(int(running.worker.rsplit(":", 1)[1]))
    (survivor,) = workers.values()

    killed_at = app.store.clock()
    victim.signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    heartbeat_timeout = float(HEARTBEAT["TASKTRAIL_HEARTBEAT_TIMEOUT"])
    reaper_interval = float(HEARTBEAT["TASKTRAIL_HEARTBEAT_INTERVAL"])
    # Only waiting this long; the deadline the issue promises is checked below.
    lose = wait_for(
        lambda: [e for e in app.events(task.id) if (e.data or {}).get("transition") == "lose"],
        timeout=heartbeat_timeout + reaper_interval + 5,
        what="the reaper to take the task back",
    )[0]
    gate.touch()
    done = wait_for(
        lambda: (t := app.get(task.id)).status.is_terminal and t,
        timeout=30,
        what="the survivor to finish the task",
    )

    # Back in scheduled within the heartbeat timeout plus one reaper interval of the kill
    # (its last heartbeat came before the kill), with slack for process and CI noise.
    recovered_after = (lose.created_at - killed_at).total_seconds()
    assert 0 < recovered_after <= heartbeat_timeout + reaper_interval + RECOVERY_SLACK
    assert (lose.from_status, lose.to_status) == (Status.RUNNING, Status.SCHEDULED)
    assert lose.message is not None
    assert lose.message.startswith(f"worker lost: {running.worker} sent no heartbeat")
    assert lose.actor is not None
    assert lose.actor.endswith(f":{survivor.pid}")
    assert done.status is Status.COMPLETED
    assert done.attempts == 2
    assert done.result == {"attempt": 2, "pid": survivor.pid}
    moves = [(e.from_status, e.to_status) for e in app.events(task.id) if e.to_status]
    assert moves == [
        (None, Status.QUEUED),
        (Status.QUEUED, Status.RUNNING),
        (Status.RUNNING, Status.SCHEDULED),
        (Status.SCHEDULED, Status.QUEUED),
        (Status.QUEUED, Status.RUNNING),
        (Status.RUNNING, Status.COMPLETED),
    ]
    assert not app.list_tasks(status="running").items
    survivor.signal(signal.SIGTERM)
    assert survivor.wait() == 0
