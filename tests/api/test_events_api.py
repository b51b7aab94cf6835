"""``GET /events`` (SSE) and ``WS /ws``: filters, replay, resume, live tail, bad input."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tasktrail import Trail
from tasktrail.api import create_app
from tasktrail.feed import Feed
from tests.support.fixtures import KEEPALIVE, BackgroundWorker
from tests.support.server import serve
from tests.support.streams import count_of, has, read_sse, read_ws
from tests.support.tasks import register


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json={"name": "test.echo", **body})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def history(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get(f"/api/v1/tasks/{task_id}/events").json()
    return events


def test_sse_replays_a_task_then_tails_it_live(
    client: httpx.Client, base_url: str, app_trail: Trail
) -> None:
    task = create(client)
    with BackgroundWorker(app_trail):
        received = read_sse(
            base_url, params={"task_id": task["id"]}, stop=has("transition", status="completed")
        )
    assert received == history(client, task["id"])
    assert [e["status"] for e in received if e["type"] == "transition"] == [
        "queued", "running", "completed",
    ]  # fmt: skip


def test_sse_and_ws_filter_by_resource(client: httpx.Client, base_url: str) -> None:
    mine = create(client, links=[{"type": "roadmap", "id": "r1"}])
    create(client, links=[{"type": "roadmap", "id": "r2"}])
    also_mine = create(client, links=[{"type": "roadmap", "id": "r1"}])

    params = {"resource_type": "roadmap", "resource_id": "r1"}
    by_sse = read_sse(base_url, params=params, stop=count_of("transition", 2))
    by_ws = read_ws(
        base_url, query="resource_type=roadmap&resource_id=r1", stop=count_of("transition", 2)
    )

    assert [e["task_id"] for e in by_sse] == [mine["id"], also_mine["id"]]
    assert by_ws == by_sse


def test_resume_after_a_cursor_skips_what_was_seen(client: httpx.Client, base_url: str) -> None:
    task = create(client, run_immediately=False)
    client.post(f"/api/v1/tasks/{task['id']}/run")
    client.post(f"/api/v1/tasks/{task['id']}/cancel")
    full = history(client, task["id"])
    assert len(full) == 3
    first = full[0]["id"]

    done = has("transition", status="cancelled")
    by_header = read_sse(
        base_url,
        params={"task_id": task["id"], "after": 0},  # the header wins over ?after=
        headers={"Last-Event-ID": str(first)},
        stop=done,
    )
    by_query = read_sse(base_url, params={"task_id": task["id"], "after": first}, stop=done)
    by_ws = read_ws(base_url, query=f"task_id={task['id']}&after={first}", stop=done)
    assert by_header == by_query == by_ws == full[1:]


def test_unfiltered_stream_starts_from_now(client: httpx.Client, base_url: str) -> None:
    old = create(client, run_immediately=False)
    received: list[list[dict[str, Any]]] = []
    reader = threading.Thread(
        target=lambda: received.append(read_sse(base_url, stop=has("transition")))
    )
    reader.start()
    # The reader may connect before or after any one submit, so submit until it has one.
    created = []
    deadline = time.monotonic() + 20
    while reader.is_alive() and time.monotonic() < deadline:
        created.append(create(client)["id"])
        reader.join(0.2)
    assert received, "the SSE reader got nothing"
    assert received[0][0]["task_id"] in created
    assert all(e["task_id"] != old["id"] for e in received[0])


def test_unfiltered_stream_tells_its_starting_point_for_an_exact_resume(
    client: httpx.Client, base_url: str
) -> None:
    with (
        httpx.Client(base_url=base_url, timeout=20) as http,
        http.stream("GET", "/api/v1/events") as response,
    ):
        lines = response.iter_lines()
        start = next(line for line in lines if line.startswith("id: "))[4:]
        assert next(lines) == ""  # an id alone: no data, no event
    # Disconnected before any event; one is written meanwhile.
    missed = create(client)

    resumed = read_sse(base_url, headers={"Last-Event-ID": start}, stop=has("transition"))
    assert resumed[0]["task_id"] == missed["id"]
    assert resumed[0]["id"] == int(start) + 1


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"resource_type": "roadmap"}, {}),
        ({"after": -1}, {}),
        ({"after": "soon"}, {}),
        ({}, {"Last-Event-ID": "abc"}),
    ],
)
def test_sse_refuses_bad_filters_with_422(
    base_url: str, params: dict[str, Any], headers: dict[str, str]
) -> None:
    response = httpx.get(base_url + "/api/v1/events", params=params, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.parametrize("query", ["after=-3", "after=x", "resource_id=r1"])
def test_ws_refuses_bad_filters_with_422(base_url: str, query: str) -> None:
    url = base_url.replace("http://", "ws://") + f"/api/v1/ws?{query}"
    with pytest.raises(InvalidStatus) as refused, connect(url):
        pass
    assert refused.value.response.status_code == 422


def test_resuming_from_an_id_the_server_has_not_reached_repeats_nothing(
    app_trail: Trail, database_url: str
) -> None:
    # Polling only once an hour: the server hears another process's events late (on SQLite
    # not at all here), so a client can hold an id beyond the server's feed.
    feed = Feed(app_trail.store, poll_interval=3600, keepalive=KEEPALIVE)
    other = Trail(database_url)
    register(other)
    try:
        with (
            serve(create_app(app_trail, token="", feed=feed)) as url,
            httpx.Client(base_url=url, timeout=20) as client,
            client.stream("GET", "/api/v1/events") as idle,  # keeps the feed running
        ):
            # A ping: the stream has subscribed (the feed is running and has its safe id).
            idle_lines = idle.iter_lines()  # kept: dropping the iterator closes the stream
            assert next(line for line in idle_lines if line.startswith(":")) == ": ping"
            task = other.submit("test.echo", {"x": 1}, run=False)
            other.run(task.id)
            seen = history(client, task.id)
            latest = seen[-1]["id"]

            resumed: list[dict[str, Any]] = []
            params = {"task_id": task.id}
            headers = {"Last-Event-ID": str(latest)}
            with client.stream("GET", "/api/v1/events", params=params, headers=headers) as stream:
                lines = stream.iter_lines()
                # The first ping proves the subscription has looked once and is waiting.
                assert next(line for line in lines if line.startswith(":")) == ": ping"
                cancelled = client.post(f"/api/v1/tasks/{task.id}/cancel")  # by this server
                assert cancelled.status_code == 200, cancelled.text
                deadline = time.monotonic() + 20
                for line in lines:
                    assert time.monotonic() < deadline, f"no cancel event; got {resumed}"
                    if line.startswith("data: "):
                        resumed.append(json.loads(line[6:]))
                        if resumed[-1]["type"] == "transition":
                            break
            assert all(event["id"] > latest for event in resumed), resumed
            assert resumed == history(client, task.id)[len(seen) :]
    finally:
        other.close()


def raw_get(base_url: str, target: str, headers: bytes = b"") -> tuple[int, bytes]:
    """The status and body of a GET sent byte for byte (clients would refuse or encode
    these headers and paths themselves)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            + (headers or b"Connection: close\r\n") + b"\r\n"
        )  # fmt: skip
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


LAST_EVENT_ID = b"Connection: close\r\nLast-Event-ID: "
WS_UPGRADE = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@pytest.mark.parametrize("value", [b"\xb2", b"\xc2\xb2", b"12\xb3", b"1 2", b"-1", b"9" * 40])
def test_a_malformed_last_event_id_is_refused_with_422(base_url: str, value: bytes) -> None:
    status, body = raw_get(base_url, "/api/v1/events", LAST_EVENT_ID + value + b"\r\n")
    assert status == 422, body
    assert b"Last-Event-ID must be an event id" in body


@pytest.mark.parametrize("after", ["%C2%B2", "%D9%A1", "%EF%BC%91", "1%202", "9" * 40])
def test_a_malformed_after_is_refused_with_422_on_sse_and_ws(base_url: str, after: str) -> None:
    status, body = raw_get(base_url, f"/api/v1/events?after={after}")
    assert status == 422, body
    assert b"after" in body
    status, body = raw_get(base_url, f"/api/v1/ws?after={after}", WS_UPGRADE)
    assert status == 422, body
    assert b"after must be an event id" in body


@pytest.mark.parametrize("params", [{}, {"resource_type": "roadmap", "resource_id": "idle"}])
def test_an_idle_sse_stream_gets_keep_alive_pings(
    client: httpx.Client, params: dict[str, str]
) -> None:
    # The fixture's feed ticks every KEEPALIVE seconds; nothing happens meanwhile.
    with client.stream("GET", "/api/v1/events", params=params) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while seen.count(": ping") < 2:
            assert time.monotonic() < deadline, f"no keep-alive ping; got {seen}"
            seen.append(next(lines))
    assert not [line for line in seen if line.startswith("data:")]
