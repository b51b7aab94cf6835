"""Cross-site requests are refused and change nothing; with a token, the dashboard asks
for it. Real HTTP against a real server, on each backend."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tasktrail import Trail
from tasktrail.serve import build_app
from tasktrail.web.auth import CSRF_COOKIE, SESSION_COOKIE
from tests.support.server import serve

TOKEN = "s3cret-dashboard-token"


def parked_task(trail: Trail) -> str:
    # Created but not queued: nothing runs it, so only a request could change it.
    return trail.submit("web.echo", {}, run=False).id


def csrf_of(http: httpx.Client) -> str:
    http.get("/login")
    value = http.cookies.get(CSRF_COOKIE)
    assert value
    return value


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({}, None),
        ({}, "wrong-token-wrong-token-wrong-token"),
        ({"Origin": "https://evil.example"}, "cookie"),
        ({"Sec-Fetch-Site": "cross-site"}, "cookie"),
    ],
    ids=["no-token", "wrong-token", "foreign-origin", "cross-site-fetch"],
)
def test_a_cross_site_post_is_refused_and_changes_nothing(
    web_trail: Trail, server: str, http: httpx.Client, headers: dict[str, str], field: str | None
) -> None:
    task_id = parked_task(web_trail)
    cookie = csrf_of(http)
    form = {} if field is None else {"csrf_token": cookie if field == "cookie" else field}

    response = http.post(f"/tasks/{task_id}/cancel", data=form, headers=headers)

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert web_trail.get(task_id).status.value == "created"
    assert [e.type for e in web_trail.events(task_id)] == ["transition"]


def test_a_same_site_post_with_the_token_acts(
    web_trail: Trail, server: str, http: httpx.Client
) -> None:
    task_id = parked_task(web_trail)
    form = {"csrf_token": csrf_of(http)}

    response = http.post(f"/tasks/{task_id}/cancel", data=form, headers={"Origin": server})

    assert response.status_code == 303
    assert response.headers["location"] == f"/tasks/{task_id}"
    assert web_trail.get(task_id).status.value == "cancelled"
    refused = http.post(f"/tasks/{task_id}/cancel", data=form)
    assert refused.status_code == 409
    assert "cancelled" in refused.json()["detail"]


@pytest.fixture
def guarded(web_trail: Trail) -> Iterator[httpx.Client]:
    with (
        serve(build_app(web_trail, token=TOKEN)) as url,
        httpx.Client(base_url=url, timeout=20) as http,
    ):
        yield http


@pytest.mark.parametrize("path", ["/", "/overview", "/tasks/x", "/resources/roadmap/r1"])
def test_with_a_token_pages_send_you_to_log_in(guarded: httpx.Client, path: str) -> None:
    response = guarded.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_with_a_token_streams_metrics_and_actions_answer_401(
    web_trail: Trail, guarded: httpx.Client
) -> None:
    task_id = parked_task(web_trail)
    assert guarded.get("/stream").status_code == 401
    assert guarded.get("/metrics").status_code == 401
    form = {"csrf_token": csrf_of(guarded)}
    assert guarded.post(f"/tasks/{task_id}/cancel", data=form).status_code == 401
    assert web_trail.get(task_id).status.value == "created"


def test_logging_in_with_the_token_opens_the_dashboard(
    web_trail: Trail, guarded: httpx.Client
) -> None:
    task_id = parked_task(web_trail)
    form = {"csrf_token": csrf_of(guarded), "next": f"/tasks/{task_id}"}

    wrong = guarded.post("/login", data={**form, "token": "nope"})
    assert wrong.status_code == 401
    assert guarded.cookies.get(SESSION_COOKIE) is None

    response = guarded.post("/login", data={**form, "token": TOKEN})
    assert response.status_code == 303
    assert response.headers["location"] == f"/tasks/{task_id}"
    assert "httponly" in response.headers["set-cookie"].lower()
    assert TOKEN not in response.headers["set-cookie"]
    page = guarded.get(f"/tasks/{task_id}")
    assert page.status_code == 200
    assert task_id in page.text
    assert guarded.get("/metrics").status_code == 200
    cancelled = guarded.post(f"/tasks/{task_id}/cancel", data={"csrf_token": form["csrf_token"]})
    assert cancelled.status_code == 303
    assert web_trail.get(task_id).status.value == "cancelled"


def test_metrics_take_the_api_bearer_token(guarded: httpx.Client) -> None:
    response = guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "tasktrail_tasks" in response.text


def test_login_never_redirects_to_another_site(guarded: httpx.Client) -> None:
    form = {"csrf_token": csrf_of(guarded), "token": TOKEN, "next": "//evil.example/x"}
    response = guarded.post("/login", data=form)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
