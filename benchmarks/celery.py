"""Celery alone against Celery through tasktrail, the same workload in the same run.

Each system gets one ``celery worker`` (prefork, ``BENCH_CELERY_CONCURRENCY`` processes,
default 2) and ``BENCH_CELERY_TASKS`` tasks (default 1000) that each report three progress
steps; the figure is tasks/s from the first submit to the last result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from celery.result import ResultSet

from benchmarks.celery_apps import PLAIN_TASK, RESULT_BACKEND, make_plain_app, tracked_trail

TASKS = int(os.environ.get("BENCH_CELERY_TASKS", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_CELERY_CONCURRENCY", "2"))
ROOT = Path(__file__).resolve().parents[1]
REDIS_RESULTS = RESULT_BACKEND


@contextmanager
def celery_worker(app: str, queue: str, env: dict[str, str]) -> Iterator[None]:
    """A ``celery worker`` for ``app`` on ``queue``, stopped afterwards."""
    log = tempfile.NamedTemporaryFile(prefix=f"{queue}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-P", "prefork",
         "-c", str(CONCURRENCY), "-Q", queue, "-n", f"{queue}@%h", "--without-heartbeat",
         "--without-mingle", "--without-gossip", "-l", "warning"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(3)  # let the pool start before the clock does
        if process.poll() is not None:
            raise RuntimeError(f"celery worker for {app} exited; see {log.name}")
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return TASKS / (time.perf_counter() - start)


def plain_celery(result_backend: str) -> float:
    """Tasks/s for Celery alone, progress via ``update_state`` into ``result_backend``."""
    queue = f"bench-plain-{uuid.uuid4().hex[:6]}"
    env = {"BENCH_RESULT_BACKEND": result_backend}
    with celery_worker("benchmarks.celery_apps:plain_app", queue, env):
        client = make_plain_app(result_backend)

        def run() -> None:
            results = [client.send_task(PLAIN_TASK, (n,), queue=queue) for n in range(TASKS)]
            ResultSet(results, app=client).join(timeout=600, interval=0.05)

        return _timed(run)


def tracked_celery(database_url: str) -> float:
    """Tasks/s for Celery through tasktrail, every step recorded in ``database_url``."""
    queue = f"bench-tracked-{uuid.uuid4().hex[:6]}"
    trail = tracked_trail(database_url)
    try:
        with celery_worker(
            "benchmarks.celery_apps:tracked_app", queue, {"TASKTRAIL_DATABASE_URL": database_url}
        ):

            def run() -> None:
                for n in range(TASKS):
                    trail.submit("bench.tracked", {"n": n}, queue=queue)
                while trail.list_tasks(status=["queued", "running"], limit=1).items:
                    time.sleep(0.05)

            return _timed(run)
    finally:
        trail.close()
