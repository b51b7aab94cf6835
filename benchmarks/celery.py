"""Celery alone against Celery through tasktrail, the same workload in the same run.

Each system gets one ``celery worker`` (prefork, ``BENCH_CELERY_CONCURRENCY`` processes,
default 2) and ``BENCH_CELERY_TASKS`` tasks (default 1000) that each report three progress
steps; the figure is tasks/s from the first submit to the last result. The clock starts
once the worker answers a control ping, and a figure is reported only when every task
returned its own ``n`` (checked the same way on both sides). Celery alone also drains a
queue loaded before its worker starts (``plain_celery_drain``), the lifecycle's workload.

The idle latency (``*_latency``) runs the lifecycle benchmark's way
(``benchmarks/peers/lifecycle.py``): a worker of its own, ready, then one task at a time with
``pauses()`` between; p50 and p95 of submit → completed, from the timestamps each side
records (see the functions).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import ResultSet

from benchmarks.celery_apps import (
    BROKER_URL,
    PLAIN_TASK,
    RESULT_BACKEND,
    make_plain_app,
    make_tracked_app,
    tracked_trail,
)
from benchmarks.peers.lifecycle import idle_latencies, quantiles, tasktrail_latency, watching
from tasktrail import Status, Trail

TASKS = int(os.environ.get("BENCH_CELERY_TASKS", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_CELERY_CONCURRENCY", "2"))
ROOT = Path(__file__).resolve().parents[1]
REDIS_RESULTS = RESULT_BACKEND
READY_TIMEOUT = 60.0
DRAIN_POLL = 0.1
#: How a stored result says it succeeded, looked for in its raw JSON.
_SUCCESS = b'"status": "SUCCESS"'


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


@contextmanager
def plain_worker(result_backend: str) -> Iterator[tuple[Celery, str]]:
    """A ready ``celery worker`` of ``plain_app`` storing into ``result_backend``, on a queue
    of its own; yields the client app to send with and that queue."""
    queue = f"bench-plain-{uuid.uuid4().hex[:6]}"
    env = {"BENCH_RESULT_BACKEND": result_backend}
    client = make_plain_app(result_backend)
    with celery_worker("benchmarks.celery_apps:plain_app", client, queue, env):
        yield client, queue


@contextmanager
def tracked_worker(database_url: str) -> Iterator[tuple[Trail, str]]:
    """A ready ``celery worker`` of ``tracked_app`` recording into ``database_url``, on a
    queue of its own; yields the Trail to submit with (closed afterwards) and that queue."""
    queue = f"bench-tracked-{uuid.uuid4().hex[:6]}"
    client = make_tracked_app()
    trail = tracked_trail(database_url, client)
    try:
        env = {"TASKTRAIL_DATABASE_URL": database_url}
        with celery_worker("benchmarks.celery_apps:tracked_app", client, queue, env):
            yield trail, queue
    finally:
        trail.close()


def check_results(system: str, results: list[Any], total: int = TASKS) -> None:
    """Raise unless task ``n`` of the run returned ``n``, for every ``n`` below ``total``: a
    figure for a run that lost or failed tasks would be meaningless."""
    wrong = [n for n, value in enumerate(results) if value != n]
    if len(results) != total or wrong:
        raise RuntimeError(
            f"{system}: {len(wrong) + total - len(results)} of {total} tasks did not complete "
            f"with their result (first: {wrong[:5]}); no figure reported"
        )


def tracked_results(trail: Trail, ids: list[str]) -> list[Any]:
    """The result of each task of ``ids`` that completed, ``None`` for the others."""
    tasks = [trail.get(task_id) for task_id in ids]
    return [task.result if task.status is Status.COMPLETED else None for task in tasks]


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return TASKS / (time.perf_counter() - start)


def plain_celery(result_backend: str) -> float:
    """Tasks/s for Celery alone, progress via ``update_state`` into ``result_backend``."""
    results: list[Any] = []
    with plain_worker(result_backend) as (client, queue):

        def run() -> None:
            sent = [client.send_task(PLAIN_TASK, (n,), queue=queue) for n in range(TASKS)]
            results.extend(ResultSet(sent, app=client).join(timeout=600, interval=0.05))

        rate = _timed(run)
    check_results(f"Celery ({result_backend.split(':')[0]} results)", results)
    return rate


def plain_celery_drain(result_backend: str) -> float:
    """Tasks/s for Celery alone draining a queue of ``TASKS`` sent before its worker
    starts, as the lifecycle's drains are timed: from the first task stored as done to the
    last, by the ``date_done`` the worker stamps on each (so neither the sending client nor
    the worker's start is counted). ``result_backend`` is a Redis URL.

    The tasks are sent by an app without a result backend: the Redis backend subscribes
    the sender to each task's result channel, and a client that read 20,000 messages while
    the worker drains would take CPU from it. For the same reason the waiting client looks
    every ``DRAIN_POLL`` seconds at the raw results still pending, in one ``MGET``, without
    decoding them (decoding 5,000 took 43 ms here: a third of a core at that rate), and
    decodes them once, after the drain.
    """
    queue = f"bench-plain-{uuid.uuid4().hex[:6]}"
    with Celery("bench_plain_sender", broker=BROKER_URL) as sender:
        ids = [sender.send_task(PLAIN_TASK, (n,), queue=queue).id for n in range(TASKS)]
    reader = make_plain_app(result_backend)
    backend = reader.backend
    keys = [backend.get_key_for_task(task_id) for task_id in ids]
    deadline = time.monotonic() + 600
    with celery_worker("benchmarks.celery_apps:plain_app", reader, queue,
                       {"BENCH_RESULT_BACKEND": result_backend}):  # fmt: skip
        pending = keys
        while pending and time.monotonic() < deadline:  # past it, check_results tells
            time.sleep(DRAIN_POLL)
            pending = [key for key, raw in zip(pending, backend.mget(pending), strict=True)
                       if raw is None or _SUCCESS not in raw]  # fmt: skip
    metas = [backend.decode_result(raw) for raw in backend.mget(keys) if raw is not None]
    done = [meta for meta in metas if meta["status"] == "SUCCESS"]
    check_results(f"Celery ({result_backend.split(':')[0]} results, queue loaded first)",
                  [meta["result"] for meta in done])  # fmt: skip
    stamps = sorted(datetime.fromisoformat(meta["date_done"]) for meta in done)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]).total_seconds()


def tracked_celery(database_url: str) -> float:
    """Tasks/s for Celery through tasktrail, every step recorded in ``database_url``."""
    ids: list[str] = []
    with tracked_worker(database_url) as (trail, queue):

        def run() -> None:
            for n in range(TASKS):
                ids.append(trail.submit("bench.tracked", {"n": n}, queue=queue).id)
            while trail.list_tasks(status=["queued", "running"], limit=1).items:
                time.sleep(0.05)

        rate = _timed(run)
        check_results("Celery through tasktrail", tracked_results(trail, ids))
    return rate


def plain_celery_latency(result_backend: str, samples: int) -> tuple[float, float]:
    """p50 and p95 in ms of submit → completed for Celery alone (``update_state`` progress
    into ``result_backend``): ``samples`` tasks sent one at a time to an idle, ready worker.
    Submit is the wall clock just before ``send_task``; completed is the result's
    ``date_done``, which the worker stamps (its wall clock, UTC) as it stores the result.
    The client waits for each result with ``get`` (pub/sub on Redis, no polling interval)."""
    results: list[Any] = []
    with plain_worker(result_backend) as (client, queue):

        def sample() -> float:
            submitted = datetime.now(UTC)
            result = client.send_task(PLAIN_TASK, (len(results),), queue=queue)
            results.append(result.get(timeout=60))
            return float((result.date_done - submitted).total_seconds() * 1e3)

        millis = idle_latencies(samples, sample)
    check_results(f"Celery ({result_backend.split(':')[0]} results)", results, samples)
    return quantiles(millis)


def tracked_celery_latency(database_url: str, samples: int) -> tuple[float, float]:
    """p50 and p95 in ms of submit → completed for Celery through tasktrail: ``samples``
    tasks submitted one at a time to an idle, ready worker, timed by tasktrail's own
    ``created_at`` → ``completed_at`` (as the lifecycle's tasktrail rows)."""
    ids: list[str] = []
    with tracked_worker(database_url) as (trail, queue), watching(database_url) as ended:

        def sample() -> float:
            task = trail.submit("bench.tracked", {"n": len(ids)}, queue=queue)
            ids.append(task.id)
            return tasktrail_latency(trail, task, ended)

        millis = idle_latencies(samples, sample)
        check_results("Celery through tasktrail", tracked_results(trail, ids), samples)
    return quantiles(millis)
