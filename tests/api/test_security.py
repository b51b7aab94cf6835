"""The API token (401), the body limit (413) and what stays open (``/healthz``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tasktrail import Trail
from tasktrail.api import create_app
from tasktrail.feed import Feed
from tests.support.fixtures import KEEPALIVE
from tests.support.server import serve
from tests.support.streams import has, read_sse, read_ws

TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def secured_url(app_trail: Trail) -> Iterator[str]:
    app = create_app(
        app_trail, token=TOKEN, max_body_bytes=2000, feed=Feed(app_trail.store, keepalive=KEEPALIVE)
    )
    with serve(app) as url:
        yield url


def test_every_api_call_needs_the_bearer_token(secured_url: str) -> None:
    with httpx.Client(base_url=secured_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = http.get("/api/v1/tasks", headers=headers)
            assert response.status_code == 401, headers
            assert "Authorization: Bearer" in response.json()["detail"]
            assert response.headers["www-authenticate"] == "Bearer"
        assert http.post("/api/v1/tasks", json={"name": "test.echo"}).status_code == 401
        assert http.get("/api/v1/resources/roadmap/r1/tasks").status_code == 401
        assert http.get("/api/v1/events").status_code == 401
        # The query parameter is for browsers' EventSource and WebSocket only.
        assert http.get("/api/v1/tasks", params={"token": TOKEN}).status_code == 401

        created = http.post("/api/v1/tasks", json={"name": "test.echo"}, headers=BEARER)
        assert created.status_code == 201
        assert http.get("/api/v1/tasks", headers=BEARER).status_code == 200
        assert http.get("/healthz").json() == {"status": "ok"}


def test_event_streams_take_the_token_as_a_query_parameter(secured_url: str) -> None:
    with httpx.Client(base_url=secured_url) as http:
        task = http.post("/api/v1/tasks", json={"name": "test.echo"}, headers=BEARER).json()

    by_query = read_sse(
        secured_url, params={"task_id": task["id"], "token": TOKEN}, stop=has("transition")
    )
    by_header = read_sse(
        secured_url, params={"task_id": task["id"]}, headers=BEARER, stop=has("transition")
    )
    by_ws = read_ws(
        secured_url, query=f"task_id={task['id']}&token={TOKEN}", stop=has("transition")
    )
    assert by_query == by_header == by_ws

    ws_url = secured_url.replace("http://", "ws://") + "/api/v1/ws"
    for query in ("", "?token=wrong"):
        with pytest.raises(InvalidStatus) as refused, connect(ws_url + query):
            pass
        assert refused.value.response.status_code == 401


def test_the_token_comes_from_the_environment(
    app_trail: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKTRAIL_API_TOKEN", TOKEN)
    with serve(create_app(app_trail)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/api/v1/tasks").status_code == 401
        assert http.get("/api/v1/tasks", headers=BEARER).status_code == 200


def test_bodies_over_the_limit_get_413_and_write_nothing(secured_url: str) -> None:
    big = {"name": "test.echo", "params": {"blob": "x" * 3000}}
    with httpx.Client(base_url=secured_url, headers=BEARER) as http:
        response = http.post("/api/v1/tasks", json=big)
        assert response.status_code == 413
        assert "2000 bytes" in response.json()["detail"]

        # Without a Content-Length (chunked), the limit holds while reading.
        def chunks() -> Iterator[bytes]:
            yield b'{"name": "test.echo", "params": {"blob": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}}'

        chunked = http.post(
            "/api/v1/tasks", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        assert http.get("/api/v1/tasks").json()["items"] == []

        small = http.post("/api/v1/tasks", json={"name": "test.echo", "params": {"n": 1}})
        assert small.status_code == 201


TASK = "01m87x8mp99epv16j2cdb4qpwb"
SECURED = [
    ("POST", "/api/v1/tasks"),
    ("POST", "/api/v1/tasks/batch"),
    ("GET", "/api/v1/tasks"),
    ("GET", f"/api/v1/tasks/{TASK}"),
    ("GET", f"/api/v1/tasks/{TASK}/status"),
    ("POST", f"/api/v1/tasks/{TASK}/run"),
    ("POST", f"/api/v1/tasks/{TASK}/cancel"),
    ("POST", f"/api/v1/tasks/{TASK}/retry"),
    ("GET", f"/api/v1/tasks/{TASK}/events"),
    ("GET", "/api/v1/resources/roadmap/r1/tasks"),
    ("GET", "/api/v1/resources/roadmap/r1/status-check"),
    ("GET", "/api/v1/events"),
]


def test_the_secured_list_names_every_api_route(app_trail: Trail) -> None:
    # So that a route added later cannot be left out of the 401 test below.
    paths = create_app(app_trail, token=TOKEN).openapi()["paths"]
    documented = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/v1")
        for method in operations
    }
    listed = {
        (
            method,
            path.replace(TASK, "{task_id}").replace("roadmap/r1", "{resource_type}/{resource_id}"),
        )
        for method, path in SECURED
    }
    assert listed == documented


@pytest.mark.parametrize(("method", "path"), SECURED)
def test_every_route_answers_401_without_the_token(
    secured_url: str, method: str, path: str
) -> None:
    with httpx.Client(base_url=secured_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = http.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (headers, response.text)
            assert "Authorization: Bearer" in response.json()["detail"]
        # Streamed: /events never ends; its status line is enough.
        with http.stream(method, path, headers=BEARER, json={}) as with_token:
            assert with_token.status_code != 401


def test_the_websocket_answers_401_without_the_token(secured_url: str) -> None:
    url = secured_url.replace("http://", "ws://") + "/api/v1/ws"
    for query in ("", "?token=wrong"):
        with pytest.raises(InvalidStatus) as refused, connect(url + query):
            pass
        assert refused.value.response.status_code == 401
