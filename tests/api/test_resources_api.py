"""``/resources/{type}/{id}/tasks`` and ``…/status-check`` over real HTTP, on each backend."""

from __future__ import annotations

from typing import Any

import httpx

from tasktrail import Trail
from tests.support.fixtures import BackgroundWorker
from tests.support.polling import eventually


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json={"name": "test.echo", **body})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def test_resource_tasks_are_newest_first_with_their_role(
    client: httpx.Client, app_trail: Trail
) -> None:
    creation = create(client, links=[{"type": "roadmap", "id": "r1", "role": "creation"}])
    with BackgroundWorker(app_trail):
        eventually(lambda: app_trail.get(creation["id"]).status == "completed")
    retry = create(
        client,
        links=[
            {"type": "roadmap", "id": "r1", "role": "retry_tutorial"},
            {"type": "concept", "id": "c1"},
        ],
    )
    create(client, links=[{"type": "roadmap", "id": "r2", "role": "creation"}])

    linked = client.get("/api/v1/resources/roadmap/r1/tasks").json()
    assert [(t["id"], t["role"]) for t in linked] == [
        (retry["id"], "retry_tutorial"),
        (creation["id"], "creation"),
    ]
    active = client.get("/api/v1/resources/roadmap/r1/tasks", params={"active": "true"}).json()
    assert [t["id"] for t in active] == [retry["id"]]
    inactive = client.get("/api/v1/resources/roadmap/r1/tasks", params={"active": "false"})
    assert [t["id"] for t in inactive.json()] == [creation["id"]]
    assert client.get("/api/v1/resources/roadmap/none/tasks").json() == []
    bad = client.get("/api/v1/resources/roadmap/r1/tasks", params={"active": "maybe"})
    assert bad.status_code == 422


def test_status_check_without_a_probe_lists_active_tasks(client: httpx.Client) -> None:
    task = create(client, links=[{"type": "roadmap", "id": "r1", "role": "creation"}])

    check = client.get("/api/v1/resources/roadmap/r1/status-check").json()

    assert check["resource_type"] == "roadmap"
    assert check["resource_id"] == "r1"
    assert check["has_active_task"] is True
    assert [(t["id"], t["role"]) for t in check["active_tasks"]] == [(task["id"], "creation")]
    assert check["stale_items"] == []
    idle = client.get("/api/v1/resources/roadmap/r2/status-check").json()
    assert (idle["has_active_task"], idle["active_tasks"], idle["stale_items"]) == (False, [], [])


def test_status_check_counts_a_retry_that_finished_while_the_probe_ran(
    client: httpx.Client, app_trail: Trail
) -> None:
    retry = create(
        client,
        links=[
            {"type": "roadmap", "id": "r1", "role": "retry_tutorial"},
            {"type": "concept", "id": "c1"},
        ],
    )

    @app_trail.stale_probe("roadmap", item_type="concept")
    def probe(roadmap_id: str) -> list[dict[str, Any]]:
        claims = [{"item": "c1", "status": "generating"}]
        app_trail.run_pending()  # the retry finishes while the probe runs
        return claims

    check = client.get("/api/v1/resources/roadmap/r1/status-check").json()
    assert app_trail.get(retry["id"]).status == "completed"
    assert check["stale_items"] == []
    later = client.get("/api/v1/resources/roadmap/r1/status-check").json()
    assert [entry["item"] for entry in later["stale_items"]] == ["c1"]
