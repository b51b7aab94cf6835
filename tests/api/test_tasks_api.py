"""Every row of the contract's HTTP table for ``/tasks``, over real HTTP, on each backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tasktrail import Trail
from tests.support.fixtures import BackgroundWorker
from tests.support.polling import eventually

TASK_FIELDS = {
    "id", "name", "status", "progress", "current_step", "params", "result", "error",
    "attempts", "max_attempts", "queue", "dedupe_key", "description", "created_at",
    "updated_at", "queued_at", "started_at", "completed_at", "run_after", "links",
}  # fmt: skip
TIME_FIELDS = ("created_at", "updated_at", "queued_at", "started_at", "completed_at", "run_after")


def create(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/api/v1/tasks", json={"name": "test.echo", **body})


def assert_times_have_offsets(task: dict[str, Any]) -> None:
    for field in TIME_FIELDS:
        if task[field] is not None:
            assert task[field].endswith("+00:00"), (field, task[field])
            assert datetime.fromisoformat(task[field]).utcoffset() == timedelta(0)


def finished(client: httpx.Client, task_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        task: dict[str, Any] = client.get(f"/api/v1/tasks/{task_id}").json()
        return task if task["status"] not in {"created", "queued", "running"} else None

    return eventually(check)


def test_create_answers_201_with_the_contract_task_json(client: httpx.Client) -> None:
    response = create(
        client,
        params={"x": 1},
        links=[{"type": "roadmap", "id": "r1", "role": "creation"}],
        description="say x",
        max_attempts=2,
        queue="default",
    )

    assert response.status_code == 201
    task = response.json()
    assert set(task) >= TASK_FIELDS
    assert task["status"] == "queued"
    assert task["deduplicated"] is False
    assert task["params"] == {"x": 1}
    assert task["max_attempts"] == 2
    assert task["links"] == [{"type": "roadmap", "id": "r1", "role": "creation"}]
    assert_times_have_offsets(task)


def test_create_with_a_taken_dedupe_key_answers_200_with_the_existing_task(
    client: httpx.Client,
) -> None:
    first = create(client, dedupe_key="once", params={"n": 1})
    again = create(client, dedupe_key="once", params={"n": 2})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["deduplicated"] is True
    assert again.json()["params"] == {"n": 1}


def test_create_without_running_leaves_it_created_until_run(client: httpx.Client) -> None:
    task = create(client, run_immediately=False).json()
    assert task["status"] == "created"

    run = client.post(f"/api/v1/tasks/{task['id']}/run")
    assert run.status_code == 200
    assert run.json()["status"] == "queued"

    again = client.post(f"/api/v1/tasks/{task['id']}/run")
    assert again.status_code == 409
    assert "queued" in again.json()["detail"]
    assert again.json()["current_status"] == "queued"


def test_create_with_run_after_in_the_future_is_scheduled(client: httpx.Client) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    task = create(client, run_after=later).json()
    assert task["status"] == "scheduled"
    assert datetime.fromisoformat(task["run_after"]) == datetime.fromisoformat(later)


def test_create_refuses_an_unknown_name_with_404(client: httpx.Client) -> None:
    response = client.post("/api/v1/tasks", json={"name": "no.such.task"})
    assert response.status_code == 404
    assert "no.such.task" in response.json()["detail"]
    assert "test.echo" in response.json()["detail"]  # says what is registered


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({}, "name"),
        ({"name": "test.echo", "params": [1, 2]}, "params"),
        ({"name": "test.echo", "links": [{"type": "", "id": "r1"}]}, "links"),
        ({"name": "test.echo", "max_attempts": 0}, "max_attempts"),
        ({"name": "test.echo", "run_after": "2030-01-01T00:00:00"}, "offset"),
        ({"name": "test.echo", "surprise": True}, "surprise"),
    ],
)
def test_create_refuses_a_bad_body_with_422_naming_the_field(
    client: httpx.Client, body: dict[str, Any], mentions: str
) -> None:
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 422
    assert mentions in response.json()["detail"]


def test_create_refuses_a_body_that_is_not_json(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/tasks", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def create_batch(client: httpx.Client, *tasks: dict[str, Any]) -> httpx.Response:
    return client.post("/api/v1/tasks/batch", json={"tasks": list(tasks)})


def test_batch_create_answers_201_with_every_task_in_order(
    client: httpx.Client, thread_worker: object
) -> None:
    response = create_batch(
        client,
        {"name": "test.echo", "params": {"n": 1}, "links": [{"type": "roadmap", "id": "r9"}]},
        {"name": "test.echo", "params": {"n": 2}, "run_immediately": False},
        {"name": "test.echo", "params": {"n": 3}, "dedupe_key": "b3"},
    )

    assert response.status_code == 201
    first, held, keyed = response.json()
    assert set(first) >= TASK_FIELDS | {"deduplicated"}
    assert [t["params"] for t in (first, held, keyed)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert (first["status"], held["status"], keyed["dedupe_key"]) == ("queued", "created", "b3")
    assert first["links"] == [{"type": "roadmap", "id": "r9", "role": None}]
    assert finished(client, first["id"])["result"] == {"n": 1}
    assert client.get(f"/api/v1/tasks/{held['id']}").json()["status"] == "created"


def test_batch_create_answers_200_when_every_key_was_taken(client: httpx.Client) -> None:
    first = create(client, dedupe_key="k1", params={"n": 1}).json()
    again = create_batch(
        client,
        {"name": "test.echo", "dedupe_key": "k1"},
        {"name": "test.echo", "dedupe_key": "k2"},
        {"name": "test.echo", "dedupe_key": "k2"},
    )
    assert again.status_code == 201  # k2 was new
    taken, new, repeated = again.json()
    assert (taken["id"], taken["deduplicated"]) == (first["id"], True)
    assert (new["deduplicated"], repeated["id"], repeated["deduplicated"]) == (
        False,
        new["id"],
        True,
    )
    all_taken = create_batch(client, {"name": "test.echo", "dedupe_key": "k2"})
    assert all_taken.status_code == 200
    assert all_taken.json()[0]["id"] == new["id"]


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        ({"tasks": []}, 422, "tasks"),
        ({"tasks": [{"name": "test.echo"}] * 501}, 422, "at most 500"),
        ({"tasks": {"name": "test.echo"}}, 422, "tasks"),
        ({"tasks": [{"name": "test.echo"}, {"name": "test.echo", "max_attempts": 0}]}, 422,
         "tasks.1.max_attempts"),
        ({"tasks": [{"name": "test.echo"}, {"name": "no.such.task"}]}, 404,
         "submission 1: no task registered as 'no.such.task'"),
        ({"tasks": [{"name": "test.echo"}], "surprise": 1}, 422, "surprise"),
        ({"name": "test.echo"}, 422, "tasks"),
    ],
)  # fmt: skip
def test_batch_create_refuses_a_bad_batch_whole_naming_the_task(
    client: httpx.Client, body: dict[str, Any], status: int, mentions: str
) -> None:
    response = client.post("/api/v1/tasks/batch", json=body)
    assert response.status_code == status
    assert mentions in response.json()["detail"]
    assert client.get("/api/v1/tasks").json()["items"] == []


def test_get_returns_links_and_an_items_summary(client: httpx.Client, app_trail: Trail) -> None:
    task = create(client, run_immediately=False).json()
    assert client.get(f"/api/v1/tasks/{task['id']}").json()["items"] == {
        "total": 0, "pending": 0, "running": 0, "completed": 0, "failed": 0,
    }  # fmt: skip

    items_task = client.post(
        "/api/v1/tasks",
        json={"name": "test.items", "params": {"keys": ["a", "b", "c"], "failing": ["b"]}},
    ).json()
    with BackgroundWorker(app_trail):
        done = finished(client, items_task["id"])

    assert done["status"] == "partial_failure"
    assert done["items"] == {"total": 3, "pending": 0, "running": 0, "completed": 2, "failed": 1}
    assert_times_have_offsets(done)


def test_get_an_unknown_task_is_404(client: httpx.Client) -> None:
    for path in ("", "/status", "/events"):
        response = client.get(f"/api/v1/tasks/nope{path}")
        assert response.status_code == 404, path
        assert "nope" in response.json()["detail"]
    for action in ("run", "cancel", "retry"):
        response = client.post(f"/api/v1/tasks/nope/{action}")
        assert response.status_code == 404, action


def test_status_is_the_short_form(client: httpx.Client) -> None:
    task = create(client).json()
    status = client.get(f"/api/v1/tasks/{task['id']}/status").json()
    assert set(status) == {
        "id", "status", "progress", "current_step", "error", "attempts", "max_attempts",
        "started_at", "completed_at", "updated_at",
    }  # fmt: skip
    assert status["status"] == "queued"


def test_list_filters_and_pages_newest_first(client: httpx.Client) -> None:
    linked = [
        create(client, links=[{"type": "roadmap", "id": "r9"}], run_immediately=False).json()
        for _ in range(3)
    ]
    other = create(client, name="test.steps").json()

    by_resource = client.get(
        "/api/v1/tasks", params={"resource_type": "roadmap", "resource_id": "r9", "limit": 2}
    ).json()
    assert [t["id"] for t in by_resource["items"]] == [linked[2]["id"], linked[1]["id"]]
    rest = client.get(
        "/api/v1/tasks",
        params={
            "resource_type": "roadmap",
            "resource_id": "r9",
            "cursor": by_resource["next_cursor"],
        },
    ).json()
    assert [t["id"] for t in rest["items"]] == [linked[0]["id"]]
    assert rest["next_cursor"] is None

    by_status = client.get("/api/v1/tasks", params={"status": "queued"}).json()
    assert [t["id"] for t in by_status["items"]] == [other["id"]]
    by_name = client.get("/api/v1/tasks", params={"name": "test.echo"}).json()
    assert {t["id"] for t in by_name["items"]} == {t["id"] for t in linked}
    two_statuses = client.get("/api/v1/tasks", params=[("status", "queued"), ("status", "created")])
    assert len(two_statuses.json()["items"]) == 4


@pytest.mark.parametrize(
    "params",
    [
        {"status": "sleeping"},
        {"limit": 0},
        {"limit": 501},
        {"resource_type": "roadmap"},
        {"resource_id": "r1"},
    ],
)
def test_list_refuses_bad_filters_with_422(client: httpx.Client, params: dict[str, Any]) -> None:
    response = client.get("/api/v1/tasks", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_cancel_a_queued_task_at_once_and_409_once_terminal(client: httpx.Client) -> None:
    task = create(client).json()

    cancelled = client.post(f"/api/v1/tasks/{task['id']}/cancel", json={"reason": "by user"})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["completed_at"] is not None

    again = client.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["current_status"] == "cancelled"
    assert "cancelled" in again.json()["detail"]

    history = client.get(f"/api/v1/tasks/{task['id']}/events").json()
    assert history[-1]["message"] == "by user"


def test_cancel_refuses_a_bad_reason_with_422(client: httpx.Client) -> None:
    task = create(client).json()
    response = client.post(f"/api/v1/tasks/{task['id']}/cancel", json={"reason": 5})
    assert response.status_code == 422


def test_retry_answers_queued_with_completed_at_and_error_cleared(
    client: httpx.Client, app_trail: Trail
) -> None:
    task = client.post(
        "/api/v1/tasks", json={"name": "test.fail", "params": {"message": "no"}}
    ).json()
    with BackgroundWorker(app_trail):
        failed = finished(client, task["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: no"

    retried = client.post(f"/api/v1/tasks/{task['id']}/retry", json={"only_failed_items": False})

    assert retried.status_code == 200
    body = retried.json()
    assert (body["status"], body["completed_at"], body["error"], body["result"]) == (
        "queued", None, None, None,
    )  # fmt: skip


def test_retry_of_an_unfinished_task_is_409_naming_its_status(client: httpx.Client) -> None:
    task = create(client).json()
    response = client.post(f"/api/v1/tasks/{task['id']}/retry")
    assert response.status_code == 409
    assert response.json()["current_status"] == "queued"
    assert "queued" in response.json()["detail"]


def test_events_pages_with_after_oldest_first(client: httpx.Client, app_trail: Trail) -> None:
    task = create(client).json()
    with BackgroundWorker(app_trail):
        finished(client, task["id"])

    events = client.get(f"/api/v1/tasks/{task['id']}/events").json()
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert [e["type"] for e in events] == ["transition", "transition", "progress", "transition"]
    assert set(events[0]) == {
        "id", "task_id", "type", "status", "from_status", "progress", "step", "message",
        "data", "at",
    }  # fmt: skip
    assert [e["status"] for e in events if e["type"] == "transition"] == [
        "queued", "running", "completed",
    ]  # fmt: skip
    later = client.get(f"/api/v1/tasks/{task['id']}/events", params={"after": events[1]["id"]})
    assert later.json() == events[2:]
    assert client.get(f"/api/v1/tasks/{task['id']}/events", params={"after": -1}).status_code == 422


def test_text_is_data_not_markup_or_sql(client: httpx.Client) -> None:
    hostile = "<script>alert(1)</script>'; DROP TABLE tasktrail_tasks; --"
    task = create(
        client,
        params={"note": hostile},
        description=hostile,
        links=[{"type": "roadmap", "id": hostile, "role": hostile}],
    ).json()

    fetched = client.get(f"/api/v1/tasks/{task['id']}").json()
    assert fetched["description"] == hostile
    assert fetched["params"] == {"note": hostile}
    assert fetched["links"] == [{"type": "roadmap", "id": hostile, "role": hostile}]
    found = client.get("/api/v1/tasks", params={"resource_type": "roadmap", "resource_id": hostile})
    assert [t["id"] for t in found.json()["items"]] == [task["id"]]


@pytest.mark.parametrize("depth", [65, 300, 600, 5000])
def test_deeply_nested_params_are_refused_with_422_and_the_list_still_works(
    client: httpx.Client, depth: int
) -> None:
    # Built as text: the client's own JSON encoder would recurse too deeply at 5000.
    params = '{"a":' * depth + "1" + "}" * depth
    for body in (
        '{"name": "test.echo", "params": ' + params + "}",
        '{"name": "test.echo", "params": {"note": "a\\u0000b", "deep": ' + params + "}}",
    ):
        response = client.post(
            "/api/v1/tasks", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert "more than 64 levels deep" in response.json()["detail"]

    listed = client.get("/api/v1/tasks")
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == []


def test_params_nested_64_levels_are_stored_and_listed(client: httpx.Client) -> None:
    params: Any = 1
    for _ in range(64):
        params = {"a": params}
    assert create(client, params=params).status_code == 201
    listed = client.get("/api/v1/tasks")
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["params"] == params


def test_text_with_nul_characters_is_refused_with_422(client: httpx.Client, base_url: str) -> None:
    # PostgreSQL cannot store NUL in text or JSON; SQLite could, but both answer the same.
    for response in (
        create(client, params={"note": "a\x00b"}),
        create(client, description="a\x00b"),
        client.get("/api/v1/tasks", params={"name": "a\x00b"}),
        client.get("/api/v1/tasks/a%00b"),
        client.get("/api/v1/events", params={"task_id": "a\x00b"}),
    ):
        assert response.status_code == 422, response.text
        assert "NUL" in response.json()["detail"]
    assert client.get("/api/v1/tasks").json()["items"] == []
    url = base_url.replace("http://", "ws://") + "/api/v1/ws?task_id=a%00b"
    with pytest.raises(InvalidStatus) as refused, connect(url):
        pass
    assert refused.value.response.status_code == 422


@pytest.mark.parametrize(
    "cursor",
    ["zzz", "", "01M87X8MP99EPV16J2CDB4QPWB", "01m87x8mp99epv16j2cdb4qpwu", "0" * 27, "é" * 26],
)
def test_a_cursor_that_is_not_a_task_id_is_refused_with_422(
    client: httpx.Client, cursor: str
) -> None:
    create(client)
    response = client.get("/api/v1/tasks", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert "cursor must be the next_cursor of a previous page" in response.json()["detail"]


def test_a_cursor_from_a_previous_page_still_pages(client: httpx.Client) -> None:
    ids = [create(client).json()["id"] for _ in range(3)]
    first = client.get("/api/v1/tasks", params={"limit": 2}).json()
    second = client.get("/api/v1/tasks", params={"limit": 2, "cursor": first["next_cursor"]})
    assert second.status_code == 200, second.text
    listed = [t["id"] for t in first["items"]] + [t["id"] for t in second.json()["items"]]
    assert listed == ids[::-1]


def items_of(client: httpx.Client, task_id: str) -> dict[str, int]:
    items: dict[str, int] = client.get(f"/api/v1/tasks/{task_id}").json()["items"]
    return items


def test_retry_only_failed_items_keeps_completed_items_done(
    client: httpx.Client, app_trail: Trail
) -> None:
    params = {"keys": ["a", "b", "c"], "failing": ["b"]}
    whole = client.post("/api/v1/tasks", json={"name": "test.items", "params": params}).json()
    only = client.post("/api/v1/tasks", json={"name": "test.items", "params": params}).json()
    app_trail.run_pending()
    for task in (whole, only):
        assert client.get(f"/api/v1/tasks/{task['id']}").json()["status"] == "partial_failure"
        assert items_of(client, task["id"]) == {
            "total": 3, "pending": 0, "running": 0, "completed": 2, "failed": 1
        }  # fmt: skip

    again = client.post(f"/api/v1/tasks/{only['id']}/retry", json={"only_failed_items": True})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "queued"
    assert items_of(client, only["id"]) == {
        "total": 3, "pending": 1, "running": 0, "completed": 2, "failed": 0
    }  # fmt: skip
    all_again = client.post(f"/api/v1/tasks/{whole['id']}/retry", json={})
    assert all_again.status_code == 200, all_again.text
    assert items_of(client, whole["id"]) == {
        "total": 3, "pending": 3, "running": 0, "completed": 0, "failed": 0
    }  # fmt: skip


def test_retry_of_a_completed_task_needs_force(client: httpx.Client, app_trail: Trail) -> None:
    task = create(client, params={"x": 1}).json()
    app_trail.run_pending()
    assert client.get(f"/api/v1/tasks/{task['id']}").json()["status"] == "completed"

    refused = client.post(f"/api/v1/tasks/{task['id']}/retry", json={"force": False})
    assert refused.status_code == 409
    assert refused.json()["current_status"] == "completed"
    assert "force" in refused.json()["detail"]

    forced = client.post(f"/api/v1/tasks/{task['id']}/retry", json={"force": True})
    assert forced.status_code == 200, forced.text
    rerun = forced.json()
    assert (rerun["status"], rerun["completed_at"], rerun["result"], rerun["error"]) == (
        "queued", None, None, None
    )  # fmt: skip
    app_trail.run_pending()
    done = client.get(f"/api/v1/tasks/{task['id']}").json()
    assert (done["status"], done["attempts"], done["result"]) == ("completed", 2, {"x": 1})
