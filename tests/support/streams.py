"""Reading the live event endpoints the way clients do: SSE over HTTP and WebSockets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

Events = list[dict[str, Any]]
Stop = Callable[[Events], bool]


def read_sse(
    base_url: str,
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    stop: Stop,
    timeout: float = 20.0,
) -> Events:
    """Read ``/api/v1/events`` until ``stop(events)`` is true, then disconnect.

    Checks that every message's SSE ``id`` equals its JSON ``id``. Fails after ``timeout``
    seconds; the server's keep-alive pings let the deadline be checked while idle.
    """
    events: Events = []
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout)) as client,
        client.stream("GET", "/api/v1/events", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        sse_id: str | None = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                sse_id = line[4:]
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert sse_id == str(event["id"]), (sse_id, event)
                events.append(event)
                sse_id = None
                if stop(events):
                    return events
            if time.monotonic() > deadline:
                raise AssertionError(f"SSE: condition not met in {timeout}s; got {events}")
    raise AssertionError(f"SSE stream ended early; got {events}")


def read_ws(
    base_url: str,
    *,
    query: str = "",
    stop: Stop,
    timeout: float = 20.0,
) -> Events:
    """Read ``/api/v1/ws?<query>`` until ``stop(events)`` is true, then disconnect."""
    url = base_url.replace("http://", "ws://") + "/api/v1/ws" + (f"?{query}" if query else "")
    events: Events = []
    deadline = time.monotonic() + timeout
    with connect(url, open_timeout=timeout) as websocket:
        while not stop(events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"WS: condition not met in {timeout}s; got {events}")
            try:
                events.append(json.loads(websocket.recv(timeout=remaining)))
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                raise AssertionError(f"WS closed early ({exc}); got {events}") from None
    return events


def has(kind: str, **fields: Any) -> Stop:
    """A stop condition: an event of type ``kind`` with these fields arrived."""

    def check(events: Events) -> bool:
        return any(
            e["type"] == kind and all(e.get(k) == v for k, v in fields.items()) for e in events
        )

    return check


def count_of(kind: str, n: int) -> Stop:
    """A stop condition: ``n`` events of type ``kind`` arrived."""
    return lambda events: sum(e["type"] == kind for e in events) >= n
