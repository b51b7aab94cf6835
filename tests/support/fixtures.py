"""Fixtures for tests that talk HTTP to a real server: import them in a ``conftest.py``."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from tasktrail import Trail
from tasktrail.api import create_app
from tasktrail.feed import Feed
from tests.support.server import serve
from tests.support.tasks import register

#: Short keep-alive ticks, so readers can check their deadlines often.
KEEPALIVE = 0.3


@pytest.fixture
def app_trail(trail: Trail) -> Trail:
    """The ``trail`` fixture (each backend) with the test task functions registered."""
    register(trail)
    return trail


@pytest.fixture
def base_url(app_trail: Trail) -> Iterator[str]:
    """The URL of a real uvicorn server running the API on ``app_trail``."""
    app = create_app(app_trail, token="", feed=Feed(app_trail.store, keepalive=KEEPALIVE))
    with serve(app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    """An HTTP client for ``base_url``."""
    with httpx.Client(base_url=base_url, timeout=20) as http:
        yield http


class BackgroundWorker:
    """Runs ``trail.run_pending()`` in a thread until stopped (stand-in for the worker)."""

    def __init__(self, trail: Trail) -> None:
        self.trail = trail
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.trail.run_pending() == 0:
                self._stop.wait(0.02)

    def __enter__(self) -> BackgroundWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the background worker did not stop"


@pytest.fixture
def thread_worker(app_trail: Trail) -> Iterator[BackgroundWorker]:
    """Runs queued tasks of ``app_trail`` in a background thread during the test."""
    with BackgroundWorker(app_trail) as running:
        yield running
