"""Live events: ``GET /events`` (Server-Sent Events) and ``WS /ws``, both replaying from a
cursor and then tailing (see ``tasktrail.feed``).

SSE messages are ``id: <event id>`` plus ``data: <event JSON>``; a browser's ``EventSource``
resumes by itself with ``Last-Event-ID``. WebSocket messages are the event JSON, whose
``id`` a client passes back as ``?after=`` when it reconnects. Comment lines (``: ping``)
keep idle SSE streams open; the server pings idle WebSockets at the protocol level.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.websockets import WebSocketDisconnect

from tasktrail.api.errors import NUL_REFUSED, ApiRoute
from tasktrail.api.models import COMMON_ERRORS, ErrorOut, Event
from tasktrail.api.security import UNAUTHORIZED, is_authorized
from tasktrail.errors import InvalidInput
from tasktrail.feed import Feed
from tasktrail.records import EventRecord
from tasktrail.text import contains_nul

MAX_ID = 2**62
SSE_RETRY_MS = 2000


class EventJson:
    """Each event's JSON text, made once and shared by every subscriber that sends it
    (the latest ``size`` of them are kept): a burst to a thousand streams is serialised
    once per event, not a thousand times. One per feed, since ids are per database."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._texts: OrderedDict[int, str] = OrderedDict()

    def __call__(self, event: EventRecord) -> str:
        text = self._texts.get(event.id)
        if text is None:
            text = self._texts[event.id] = Event.of(event).model_dump_json()
            if len(self._texts) > self._size:
                self._texts.popitem(last=False)
        return text


def resource_filter(resource_type: str | None, resource_id: str | None) -> tuple[str, str] | None:
    """``(type, id)``, None for neither, or ``InvalidInput`` for one without the other."""
    if resource_type is None and resource_id is None:
        return None
    if resource_type is None or resource_id is None:
        raise InvalidInput("give resource_type and resource_id together, or neither")
    return (resource_type, resource_id)


def resume_point(last_event_id: str | None, after: int | None) -> int | None:
    """Where to resume: the ``Last-Event-ID`` header wins over ``?after=`` (a browser that
    reconnects keeps the URL it started with)."""
    if last_event_id is None or not last_event_id.strip():
        return after
    value = last_event_id.strip()
    if not is_event_id(value):
        raise InvalidInput(
            f"Last-Event-ID must be an event id (digits 0-9, at most {MAX_ID}), "
            f"got {value[:40]!r}; send the id of the last event received, or no header"
        )
    return int(value)


def is_event_id(text: str) -> bool:
    """Whether ``text`` is an event id: ASCII digits only (``str.isdigit`` also accepts
    ``"²"`` and other digits ``int`` refuses), at most ``MAX_ID``."""
    return text.isascii() and text.isdigit() and int(text) <= MAX_ID


async def sse_stream(
    feed: Feed,
    as_json: EventJson,
    *,
    task_id: str | None,
    resource: tuple[str, str] | None,
    after: int | None,
) -> AsyncIterator[str]:
    """The text of an SSE stream: replay, then live events, with ``: ping`` comments.

    An unfiltered stream without a cursor starts from now, and says where with an ``id:``
    line of its own (no data: browsers record it as the last event id without firing an
    event), so that even a reconnect before the first event resumes exactly.
    """
    yield f"retry: {SSE_RETRY_MS}\n\n"
    if after is None and task_id is None and resource is None:
        after = await feed.start_point()
        yield f"id: {after}\n\n"
    async with contextlib.aclosing(
        feed.subscribe(task_id=task_id, resource=resource, after=after)
    ) as events:
        async for event in events:
            if event is None:
                yield ": ping\n\n"
            else:
                yield f"id: {event.id}\ndata: {as_json(event)}\n\n"


def router(feed: Feed, *, token: str | None, route_class: type[ApiRoute] = ApiRoute) -> APIRouter:
    """The ``/events`` and ``/ws`` routes over ``feed``."""
    api = APIRouter(tags=["events"], route_class=route_class, responses=COMMON_ERRORS)
    as_json = EventJson()

    @api.get(
        "/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "An endless stream: `id: <event id>` and `data: <Event JSON>`.",
            },
            422: {"model": ErrorOut, "description": "A bad filter or cursor."},
        },
    )
    async def events(
        task_id: Annotated[
            str | None, Query(max_length=64, description="Only this task's events.")
        ] = None,
        resource_type: Annotated[
            str | None,
            Query(max_length=100, description="With resource_id: events of linked tasks."),
        ] = None,
        resource_id: Annotated[
            str | None, Query(max_length=200, description="With resource_type.")
        ] = None,
        after: Annotated[
            int | None,
            Query(
                ge=0,
                le=MAX_ID,
                description="Resume after this event id. Default: all history when "
                "filtered, from now when not.",
            ),
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(description="Sent by EventSource on reconnect; wins over `after`."),
        ] = None,
        token: Annotated[
            str | None, Query(description="The API token, for browsers (EventSource).")
        ] = None,
    ) -> StreamingResponse:
        """Server-Sent Events: every matching event after the cursor, then each new one."""
        stream = sse_stream(
            feed,
            as_json,
            task_id=task_id,
            resource=resource_filter(resource_type, resource_id),
            after=resume_point(last_event_id, after),
        )
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.websocket("/ws")
    async def websocket(websocket: WebSocket) -> None:
        """The same events over a WebSocket: ``?task_id=``, ``?resource_type=`` +
        ``?resource_id=``, ``?after=``, ``?token=``."""
        if not is_authorized(websocket, token, allow_query=True):
            await _deny(websocket, 401, UNAUTHORIZED)
            return
        query = websocket.query_params
        if any(contains_nul(key) or contains_nul(value) for key, value in query.multi_items()):
            await _deny(websocket, 422, NUL_REFUSED)
            return
        try:
            resource = resource_filter(query.get("resource_type"), query.get("resource_id"))
            after = _after(query.get("after"))
        except InvalidInput as exc:
            await _deny(websocket, 422, str(exc))
            return
        await websocket.accept()
        await _serve(
            websocket, feed, as_json, task_id=query.get("task_id"), resource=resource, after=after
        )

    return api


def _after(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not is_event_id(raw):
        raise InvalidInput(
            f"after must be an event id (digits 0-9, at most {MAX_ID}), got {raw[:40]!r}; "
            "pass the id of the last event received"
        )
    return int(raw)


async def _deny(websocket: WebSocket, status_code: int, detail: str) -> None:
    # An HTTP answer to the handshake where the server supports it; a policy close if not.
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            JSONResponse({"detail": detail}, status_code=status_code)
        )
    else:
        await websocket.close(code=1008, reason=detail[:120])


async def _serve(
    websocket: WebSocket,
    feed: Feed,
    as_json: EventJson,
    *,
    task_id: str | None,
    resource: tuple[str, str] | None,
    after: int | None,
) -> None:
    async def pump() -> None:
        async with contextlib.aclosing(
            feed.subscribe(task_id=task_id, resource=resource, after=after)
        ) as events:
            async for event in events:
                if event is not None:
                    await websocket.send_text(as_json(event))

    async def until_closed() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = {asyncio.create_task(pump()), asyncio.create_task(until_closed())}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                task.result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError,
                                     RuntimeError):  # fmt: skip
                await task
