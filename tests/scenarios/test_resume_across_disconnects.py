"""A client that loses its connection misses nothing: an SSE client and a WebSocket client
each disconnect mid-task while a worker in another process keeps writing events; they come
back with the last id they saw, and what each received is the task's history exactly."""

from __future__ import annotations

from pathlib import Path

import httpx

from tasktrail import Trail
from tests.support.polling import eventually
from tests.support.processes import worker_process
from tests.support.streams import count_of, has, read_sse, read_ws


def test_sse_and_websocket_clients_resume_with_their_last_id(
    client: httpx.Client, base_url: str, app_trail: Trail, database_url: str, tmp_path: Path
) -> None:
    task = client.post(
        "/api/v1/tasks", json={"name": "test.steps", "params": {"steps": 60, "delay": 0.05}}
    ).json()
    task_id = task["id"]
    done = has("transition", status="completed")

    def progress_written() -> int:
        return sum(e.type == "progress" for e in app_trail.events(task_id))

    with worker_process(database_url, tmp_path / "worker.log"):
        sse_first = read_sse(base_url, params={"task_id": task_id}, stop=count_of("progress", 3))
        ws_first = read_ws(base_url, query=f"task_id={task_id}", stop=count_of("progress", 3))

        # Both are disconnected; the other process goes on writing.
        seen = max(sum(e["type"] == "progress" for e in got) for got in (sse_first, ws_first))
        eventually(lambda: progress_written() >= seen + 5)

        sse_rest = read_sse(
            base_url,
            params={"task_id": task_id},
            headers={"Last-Event-ID": str(sse_first[-1]["id"])},
            stop=done,
        )
        ws_rest = read_ws(
            base_url, query=f"task_id={task_id}&after={ws_first[-1]['id']}", stop=done
        )

    history = client.get(f"/api/v1/tasks/{task_id}/events").json()
    assert sse_first + sse_rest == history
    assert ws_first + ws_rest == history
    claim = next(e for e in app_trail.events(task_id) if e.to_status == "running")
    assert claim.actor is not None
    assert claim.actor != app_trail.worker_name  # the run happened in the other process
    assert len(history) == 2 + 60 + 1  # queued, running, every step, completed
