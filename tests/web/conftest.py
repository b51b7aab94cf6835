"""A real server as ``tasktrail serve`` builds it (API, dashboard, metrics and an embedded
worker) on each backend, and a real Chromium for the browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tasktrail import Trail
from tasktrail.serve import build_app
from tasktrail.worker import Worker
from tests.conftest import SKIP_SERVICES
from tests.support.server import serve
from tests.web.apps import register

CHROMIUM = os.environ.get("TASKTRAIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def web_trail(trail: Trail) -> Trail:
    """The ``trail`` fixture (each backend) with the dashboard tests' tasks."""
    register(trail)
    return trail


@pytest.fixture
def server(web_trail: Trail) -> Iterator[str]:
    """The URL of what ``tasktrail serve`` serves (no token), with a running worker."""
    worker = Worker(web_trail, concurrency=2)
    worker.start()
    try:
        with serve(build_app(web_trail, token="")) as url:
            yield url
    finally:
        worker.stop()


@pytest.fixture
def parked_server(web_trail: Trail) -> Iterator[str]:
    """The URL of what ``tasktrail serve`` serves, with no worker: tasks stay put."""
    with serve(build_app(web_trail, token="")) as url:
        yield url


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    """A client for ``server`` that keeps cookies like a browser."""
    with httpx.Client(base_url=server, timeout=20) as client:
        yield client


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """A headless Chromium (the system's; a missing one fails unless services are skipped)."""
    if shutil.which(CHROMIUM) is None:
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if SKIP_SERVICES:
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab (own cookies)."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()
