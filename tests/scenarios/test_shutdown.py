"""SIGTERM to a worker process: running tasks get a chance to finish, the rest go back to
the queue, and nothing is lost. A second signal exits at once."""

from __future__ import annotations

import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tasktrail import Status, TaskRecord, Trail
from tests.scenarios.processes import WorkerProcess, wait_for

pytestmark = pytest.mark.slow


def _started(app: Trail, ids: list[str]) -> list[str]:
    return [i for i in ids if (t := app.get(i)).status is Status.RUNNING and t.progress > 0]


def test_sigterm_requeues_unfinished_tasks_and_a_restart_finishes_them(
    app: Trail, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    worker = start_worker(
        "--concurrency", "2", "--shutdown-timeout", "0.5", "--queues", "default,x"
    )
    ids = [app.submit("scenario.gated", {"gate": str(gate)}).id for _ in range(4)]
    started = wait_for(lambda: len(_started(app, ids)) == 2 and _started(app, ids), timeout=30,
                       what="two tasks to start")  # fmt: skip

    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()

    assert [app.get(i).status for i in ids] == [Status.QUEUED] * 4
    for task_id in started:
        requeue = [e for e in app.events(task_id) if e.to_status][-1]
        assert (requeue.from_status, requeue.data["transition"]) == (Status.RUNNING, "requeue")
        assert requeue.message is not None
        assert "shut down" in requeue.message
    assert "stopped" in worker.output()

    gate.touch()
    restarted = start_worker("--concurrency", "2")

    def ended(task_id: str) -> TaskRecord | None:
        task = app.get(task_id)
        return task if task.status.is_terminal else None

    done = [wait_for(partial(ended, i), timeout=30, what=f"task {i} to end") for i in ids]
    restarted.signal(signal.SIGTERM)
    assert restarted.wait() == 0

    assert [t.status for t in done] == [Status.COMPLETED] * 4
    assert sorted(t.id for t in done if t.attempts == 2) == sorted(started)


def test_a_second_signal_exits_at_once(
    app: Trail, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    worker = start_worker("--shutdown-timeout", "60")
    task = app.submit("scenario.gated", {"gate": str(tmp_path / "never")})
    wait_for(lambda: _started(app, [task.id]), timeout=30, what="the task to start")

    worker.signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received" in worker.output(), timeout=10, what="the first signal")
    worker.signal(signal.SIGINT)

    assert worker.wait(timeout=10) == 128 + signal.SIGINT
    # Left as it was, for the reaper of another worker to recover.
    assert app.get(task.id).status is Status.RUNNING
