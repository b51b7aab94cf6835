"""Celery alone against Celery through tasktrail, the same workload in the same run.

Each system gets one ``celery worker`` (prefork, ``BENCH_CELERY_CONCURRENCY`` processes,
default 2) and ``BENCH_CELERY_TASKS`` tasks (default 1000) that each report three progress
steps; the figure is tasks/s from the first submit to the last result. The clock starts
once the worker answers a control ping, and a figure is reported only when every task
returned its own ``n`` (checked the same way on both sides).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import ResultSet

from benchmarks.celery_apps import (
    PLAIN_TASK,
    RESULT_BACKEND,
    make_plain_app,
    tracked_app,
    tracked_trail,
)
from tasktrail import Status

TASKS = int(os.environ.get("BENCH_CELERY_TASKS", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_CELERY_CONCURRENCY", "2"))
ROOT = Path(__file__).resolve().parents[1]
REDIS_RESULTS = RESULT_BACKEND
READY_TIMEOUT = 60.0


@contextmanager
def celery_worker(app: str, client: Celery, queue: str, env: dict[str, str]) -> Iterator[None]:
    """A ``celery worker`` for ``app`` on ``queue``, ready (it answered ``client``'s
    control ping) when this yields, and stopped afterwards."""
    log = tempfile.NamedTemporaryFile(prefix=f"{queue}-", suffix=".log", delete=False)  # noqa: SIM115
    node = f"{queue}@{socket.gethostname()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-P", "prefork",
         "-c", str(CONCURRENCY), "-Q", queue, "-n", node, "--without-heartbeat",
         "--without-mingle", "--without-gossip", "-l", "warning"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not client.control.ping(destination=[node], timeout=1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker for {app} is not answering; see {log.name}")
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()


def check_results(system: str, results: list[Any]) -> None:
    """Raise unless task ``n`` of the run returned ``n``, for every ``n``: a figure for a
    run that lost or failed tasks would be meaningless."""
    wrong = [n for n, value in enumerate(results) if value != n]
    if len(results) != TASKS or wrong:
        raise RuntimeError(
            f"{system}: {len(wrong) + TASKS - len(results)} of {TASKS} tasks did not complete "
            f"with their result (first: {wrong[:5]}); no figure reported"
        )


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return TASKS / (time.perf_counter() - start)


def plain_celery(result_backend: str) -> float:
    """Tasks/s for Celery alone, progress via ``update_state`` into ``result_backend``."""
    queue = f"bench-plain-{uuid.uuid4().hex[:6]}"
    env = {"BENCH_RESULT_BACKEND": result_backend}
    client = make_plain_app(result_backend)
    results: list[Any] = []
    with celery_worker("benchmarks.celery_apps:plain_app", client, queue, env):

        def run() -> None:
            sent = [client.send_task(PLAIN_TASK, (n,), queue=queue) for n in range(TASKS)]
            results.extend(ResultSet(sent, app=client).join(timeout=600, interval=0.05))

        rate = _timed(run)
    check_results(f"Celery ({result_backend.split(':')[0]} results)", results)
    return rate


def tracked_celery(database_url: str) -> float:
    """Tasks/s for Celery through tasktrail, every step recorded in ``database_url``."""
    queue = f"bench-tracked-{uuid.uuid4().hex[:6]}"
    trail = tracked_trail(database_url)
    ids: list[str] = []
    try:
        env = {"TASKTRAIL_DATABASE_URL": database_url}
        with celery_worker("benchmarks.celery_apps:tracked_app", tracked_app, queue, env):

            def run() -> None:
                for n in range(TASKS):
                    ids.append(trail.submit("bench.tracked", {"n": n}, queue=queue).id)
                while trail.list_tasks(status=["queued", "running"], limit=1).items:
                    time.sleep(0.05)

            rate = _timed(run)
        tasks = [trail.get(task_id) for task_id in ids]
        check_results(
            "Celery through tasktrail",
            [task.result if task.status is Status.COMPLETED else None for task in tasks],
        )
        return rate
    finally:
        trail.close()
