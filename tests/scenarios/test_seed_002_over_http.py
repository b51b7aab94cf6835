"""Seed 002 over HTTP: a retried task kept showing "cancelled" (``completed_at`` and the
cancel error survived the retry, and the UI got no notice before the worker's progress).

Here: cancel a running task, retry it, and the retry's answer already says ``queued`` with
``completed_at`` and ``error`` null; a live SSE client hears the retry transition before any
progress of the new run.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tasktrail import Trail
from tests.support.fixtures import BackgroundWorker
from tests.support.polling import eventually
from tests.support.streams import has, read_sse


def test_retry_of_a_cancelled_running_task_is_queued_at_once_and_streamed_first(
    client: httpx.Client, base_url: str, app_trail: Trail
) -> None:
    task = client.post("/api/v1/tasks", json={"name": "test.cancel_then_work"}).json()
    task_id = task["id"]
    seen: list[list[dict[str, Any]]] = []
    watcher = threading.Thread(
        target=lambda: seen.append(
            read_sse(
                base_url, params={"task_id": task_id}, stop=has("transition", status="completed")
            )
        )
    )
    watcher.start()

    with BackgroundWorker(app_trail):
        eventually(
            lambda: client.get(f"/api/v1/tasks/{task_id}/status").json()["status"] == "running"
        )

        asked = client.post(
            f"/api/v1/tasks/{task_id}/cancel", json={"reason": "Task cancelled by user"}
        )
        assert asked.status_code == 200
        assert asked.json()["status"] == "running"
        assert asked.json()["cancel_requested_at"] is not None
        cancelled = eventually(
            lambda: (
                (t := client.get(f"/api/v1/tasks/{task_id}").json())["status"] == "cancelled" and t
            )
        )
        assert cancelled["completed_at"] is not None

        retried = client.post(f"/api/v1/tasks/{task_id}/retry", json={"only_failed_items": False})

        assert retried.status_code == 200
        body = retried.json()
        assert body["status"] == "queued"
        assert body["completed_at"] is None
        assert body["error"] is None
        watcher.join(20)

    assert seen, "the SSE client got nothing"
    stream = seen[0]
    cancel_at = next(i for i, e in enumerate(stream) if e["status"] == "cancelled")
    retry_at = next(i for i, e in enumerate(stream) if e["status"] == "queued" and i > cancel_at)
    assert stream[retry_at]["from_status"] == "cancelled"
    assert stream[retry_at]["data"]["transition"] == "retry"
    new_run_progress = [
        i for i, e in enumerate(stream) if e["type"] == "progress" and i > cancel_at
    ]
    assert new_run_progress, "the new run reported no progress"
    assert retry_at < new_run_progress[0]
    # And the client missed nothing: what it saw is the task's history, in order.
    assert stream == client.get(f"/api/v1/tasks/{task_id}/events").json()
    final = client.get(f"/api/v1/tasks/{task_id}").json()
    assert (final["status"], final["result"], final["attempts"]) == ("completed", {"attempt": 2}, 2)
