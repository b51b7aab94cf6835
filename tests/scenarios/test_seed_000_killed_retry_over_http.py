"""Seed 000, End-to-End, "task killed": a single-concept retry runs in a worker process that
is killed with SIGKILL. While the retry runs, the roadmap's status check over HTTP reports
nothing stale; once a reaper has failed the retry (no attempts left), the concept it was
generating shows up as stale."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasktrail import Trail
from tasktrail.api import create_app
from tasktrail.feed import Feed
from tests.scenarios.processes import HEARTBEAT, WorkerProcess, wait_for
from tests.support.fixtures import KEEPALIVE
from tests.support.server import serve

pytestmark = pytest.mark.slow

#: What the app's own tables say: c1's tutorial is being generated (by the retry).
CLAIMS = [{"item": "c1", "content_type": "tutorial", "status": "generating"}]


def test_a_killed_retry_leaves_its_concept_stale_once_reaped(
    app: Trail, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    @app.stale_probe("roadmap", item_type="concept")
    def probe(roadmap_id: str) -> list[dict[str, Any]]:
        return list(CLAIMS) if roadmap_id == "r1" else []

    worker = start_worker()
    app_server = create_app(app, token="", feed=Feed(app.store, keepalive=KEEPALIVE))
    with serve(app_server) as url, httpx.Client(base_url=url, timeout=20) as http:

        def task(task_id: str) -> dict[str, Any]:
            answer: dict[str, Any] = http.get(f"/api/v1/tasks/{task_id}").json()
            return answer

        def status_check() -> dict[str, Any]:
            answer: dict[str, Any] = http.get("/api/v1/resources/roadmap/r1/status-check").json()
            return answer

        created = http.post(
            "/api/v1/tasks",
            json={
                "name": "scenario.gated",
                "params": {"gate": str(tmp_path / "never-opened")},
                "max_attempts": 1,
                "links": [
                    {"type": "roadmap", "id": "r1", "role": "retry_tutorial"},
                    {"type": "concept", "id": "c1"},
                ],
            },
        )
        assert created.status_code == 201, created.text
        retry_id = created.json()["id"]
        wait_for(
            lambda: (t := task(retry_id))["status"] == "running" and t["progress"] > 0,
            timeout=30,
            what="the retry to start in the worker process",
        )

        running = status_check()
        assert running["stale_items"] == []
        assert [(t["id"], t["role"]) for t in running["active_tasks"]] == [
            (retry_id, "retry_tutorial")
        ]

        worker.signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL
        reaper = start_worker()  # another worker notices the silence and fails the retry
        timeout = float(HEARTBEAT["TASKTRAIL_HEARTBEAT_TIMEOUT"])
        interval = float(HEARTBEAT["TASKTRAIL_HEARTBEAT_INTERVAL"])
        # Deadline: the heartbeat timeout, one reaper interval, and slack for the reaper
        # process to start on a slow machine.
        failed = wait_for(
            lambda: (t := task(retry_id))["status"] == "failed" and t,
            timeout=timeout + interval + 20,
            what="the reaper to fail the killed retry",
        )
        assert failed["error"].startswith("worker lost")

        reaped = status_check()
        assert reaped["active_tasks"] == []
        assert reaped["has_active_task"] is False
        assert reaped["stale_items"] == CLAIMS

        reaper.signal(signal.SIGTERM)
        assert reaper.wait() == 0
