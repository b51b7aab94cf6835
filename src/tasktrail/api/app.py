"""Putting the API together: ``mount`` it into your FastAPI app, or ``create_app`` to run it
alone (``tasktrail serve`` does that)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from starlette.requests import HTTPConnection

import tasktrail
from tasktrail.api import events, resources, tasks
from tasktrail.api.errors import DEFAULT_MAX_BODY_BYTES, route_class
from tasktrail.api.security import UNAUTHORIZED, configured_token, is_authorized
from tasktrail.feed import Feed
from tasktrail.trail import Trail

PREFIX = "/api/v1"


def _require_token(
    token: str | None, *, allow_query: bool
) -> Callable[[HTTPConnection], Coroutine[Any, Any, None]]:
    async def check(connection: HTTPConnection) -> None:
        if connection.scope["type"] == "websocket":
            return  # the WebSocket route checks for itself, to answer the handshake
        if not is_authorized(connection, token, allow_query=allow_query):
            raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})

    return check


def build_router(
    trail: Trail,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    feed: Feed | None = None,
) -> APIRouter:
    """Every API route under ``/api/v1``, working on ``trail``.

    ``token`` defaults to ``TASKTRAIL_API_TOKEN``; with one, every call needs
    ``Authorization: Bearer <token>`` (the event stream and WebSocket also take
    ``?token=``). Bodies over ``max_body_bytes`` get 413.
    """
    token = configured_token(token)
    routes = route_class(max_body_bytes)
    feed = feed or Feed(trail.store)
    api = APIRouter(prefix=PREFIX)
    header_only = [Depends(_require_token(token, allow_query=False))]
    api.include_router(tasks.router(trail, route_class=routes), dependencies=header_only)
    api.include_router(resources.router(trail, route_class=routes), dependencies=header_only)
    api.include_router(
        events.router(feed, token=token, route_class=routes),
        dependencies=[Depends(_require_token(token, allow_query=True))],
    )
    return api


def mount(
    app: FastAPI,
    trail: Trail,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    feed: Feed | None = None,
) -> None:
    """Add tasktrail's API to your FastAPI ``app`` under ``/api/v1``, working on ``trail``.

    The one call to make: ``tasktrail.api.mount(app, trail)``. It adds routes only; error
    handling and the body limit apply to those routes and leave the rest of ``app`` alone.
    ``feed`` tunes the live events (see ``tasktrail.feed.Feed``).
    """
    app.include_router(build_router(trail, token=token, max_body_bytes=max_body_bytes, feed=feed))


def create_app(
    trail: Trail,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    feed: Feed | None = None,
) -> FastAPI:
    """A FastAPI app serving the API for ``trail``, plus ``GET /healthz``."""
    app = FastAPI(
        title="tasktrail",
        version=tasktrail.__version__,
        description="Durable, linked, observable background tasks.",
    )
    mount(app, trail, token=token, max_body_bytes=max_body_bytes, feed=feed)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """200 with `{"status": "ok"}` while the process can reach its database."""
        await trail.list_tasks_async(limit=1)
        return {"status": "ok"}

    return app
