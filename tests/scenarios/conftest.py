"""Real worker processes (``python -m tasktrail.cli worker``) for the scenarios."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasktrail import Trail
from tests.scenarios.processes import HEARTBEAT, ROOT, WorkerProcess
from tests.support.fixtures import app_trail, base_url, client, thread_worker

APP = "tests.scenarios.worker_app:trail"

__all__ = ["app", "app_trail", "base_url", "client", "start_worker", "thread_worker"]


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes on ``database_url`` with the scenario app; any left running
    at the end are killed."""
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        env = {
            **os.environ,
            **HEARTBEAT,
            "TASKTRAIL_DATABASE_URL": database_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "TASKTRAIL_LOG_LEVEL": "warning",
        }
        log = tmp_path / f"worker-{len(started)}.log"
        command = [
            sys.executable,
            "-m",
            "tasktrail.cli",
            "worker",
            "--app",
            "tests.scenarios.worker_app:trail",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, *args], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(process, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


@pytest.fixture
def app(database_url: str) -> Iterator[Trail]:
    """The scenario app in the test process, to submit and inspect tasks."""
    from tests.scenarios.worker_app import register

    trail = Trail(database_url, auto_migrate=True)
    register(trail)
    yield trail
    trail.close()
