"""``/resources/{type}/{id}/tasks`` and ``…/status-check`` over real HTTP, on each backend."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

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


def test_resource_ids_may_contain_slashes(client: httpx.Client, app_trail: Trail) -> None:
    task = create(client, links=[{"type": "doc", "id": "docs/a.md", "role": "index"}])
    create(client, links=[{"type": "doc", "id": "docs", "role": "index"}])

    @app_trail.stale_probe("doc", item_type="section")
    def probe(doc_id: str) -> list[dict[str, Any]]:
        return [{"item": f"{doc_id}#intro"}]

    linked = client.get("/api/v1/resources/doc/docs/a.md/tasks")
    assert linked.status_code == 200, linked.text
    assert [(t["id"], t["role"]) for t in linked.json()] == [(task["id"], "index")]
    check = client.get("/api/v1/resources/doc/docs/a.md/status-check")
    assert check.status_code == 200, check.text
    assert check.json()["resource_id"] == "docs/a.md"
    assert [t["id"] for t in check.json()["active_tasks"]] == [task["id"]]
    assert check.json()["stale_items"] == []  # the task on the whole doc covers its sections


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (RuntimeError("the content table is gone"), "raised RuntimeError: the content table"),
        ({"item": "c1"}, "must return a list of dicts"),
        ([{"id": "c1"}], "each item needs an 'item' string"),
    ],
)
def test_a_failing_stale_probe_is_a_logged_500_not_a_422(
    client: httpx.Client,
    app_trail: Trail,
    caplog: pytest.LogCaptureFixture,
    answer: object,
    message: str,
) -> None:
    @app_trail.stale_probe("roadmap", item_type="concept")
    def probe(roadmap_id: str) -> Any:
        if isinstance(answer, Exception):
            raise answer
        return answer

    with caplog.at_level(logging.ERROR, logger="tasktrail.api"):
        response = client.get("/api/v1/resources/roadmap/r1/status-check")

    assert response.status_code == 500, response.text
    detail = response.json()["detail"]
    assert "the stale probe for 'roadmap'" in detail
    assert message in detail
    assert "fault in the server's stale probe" in detail
    assert any(message in record.getMessage() for record in caplog.records)
