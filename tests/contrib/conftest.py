"""Real ``celery worker`` processes (prefork pool) for the Celery executor's tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tasktrail import Trail
from tests.conftest import service_missing
from tests.support.celery_app import BROKER_URL, make_trail, side_effects

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_broker() -> str:
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis at {BROKER_URL}", exc)
    return BROKER_URL


@pytest.fixture
def postgres_url(postgres: object, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh migrated PostgreSQL database (Celery runs against PostgreSQL only)."""
    name = postgres.create(migrated=True)  # type: ignore[attr-defined]
    try:
        yield postgres.url(name).render_as_string(hide_password=False)  # type: ignore[attr-defined]
    finally:
        postgres.drop(name)  # type: ignore[attr-defined]


@pytest.fixture
def queue() -> str:
    """A Celery queue of this test's own, so workers of other tests never see its tasks."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def celery_trail(postgres_url: str, redis_broker: str) -> Iterator[Trail]:
    trail = make_trail(postgres_url, redis_broker)
    side_effects.create(trail.engine)
    yield trail
    trail.close()


class CeleryWorker:
    """One ``celery worker`` process group, started and stopped by a test."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes, as an OOM killer or power cut would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


StartWorker = Callable[..., CeleryWorker]


@pytest.fixture
def start_worker(
    postgres_url: str, redis_broker: str, queue: str, tmp_path: Path
) -> Iterator[StartWorker]:
    started: list[CeleryWorker] = []

    def start(
        name: str,
        *,
        concurrency: int = 2,
        extra_env: dict[str, str] | None = None,
        queues: str | None = queue,
    ) -> CeleryWorker:
        """Start a worker consuming ``queues`` (this test's queue; None: no ``-Q``, as
        a plain ``celery worker`` is started) and wait until it is ready."""
        log = tmp_path / f"{name}.log"
        consume = ["-Q", queues] if queues is not None else []
        env = {
            **os.environ,
            "TASKTRAIL_DATABASE_URL": postgres_url,
            "TASKTRAIL_TEST_REDIS_URL": redis_broker,
            # This checkout's source, whatever the environment has installed.
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            **(extra_env or {}),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "tests.support.celery_app:celery_app",
                    "worker", "-P", "prefork", "-c", str(concurrency), *consume,
                    "-n", f"{name}-{queue}@%h", "--without-heartbeat", "--without-mingle",
                    "--without-gossip", "-l", "info",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        worker = CeleryWorker(process, log)
        started.append(worker)
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"celery worker {name} did not start:\n{log.read_text()}")
            time.sleep(0.2)
        return worker

    yield start
    for worker in started:
        worker.stop()


class RedisServer:
    """A ``redis-server`` of a test's own, on a free port, that the test may stop and
    start again (the shared Redis is never stopped)."""

    def __init__(self, executable: str, port: int) -> None:
        self.executable = executable
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no redis-server on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server; its messages are gone with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A running ``redis-server`` on a free port, for tests that take the broker away."""
    executable = shutil.which("redis-server")
    if executable is None:
        service_missing("redis-server", FileNotFoundError("not on PATH"))
    assert executable is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = RedisServer(executable, port)
    server.start()
    yield server
    server.stop()
