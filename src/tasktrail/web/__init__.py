"""tasktrail's dashboard: server-rendered pages with live updates, plus ``/metrics``.

Mount it into your own FastAPI app beside the API::

    import tasktrail.api, tasktrail.web

    tasktrail.api.mount(app, trail)
    tasktrail.web.mount(app, trail)                  # pages at /, metrics at /metrics
    tasktrail.web.mount(app, trail, root="/tasks")   # or under a path of your choice

``tasktrail serve`` does both.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from tasktrail.api.security import configured_token
from tasktrail.feed import Feed
from tasktrail.trail import Trail
from tasktrail.web.routes import router


def mount(
    app: FastAPI,
    trail: Trail,
    *,
    root: str = "",
    token: str | None = None,
    feed: Feed | None = None,
) -> None:
    """Add the dashboard for ``trail`` to ``app`` under ``root`` ("" serves it at ``/``).

    ``token`` defaults to ``TASKTRAIL_API_TOKEN``; with one, the pages ask for it once and
    remember the browser with an HttpOnly cookie, and ``/metrics`` takes the API's Bearer
    header. Pass the API's ``feed`` to share one event hub between both.
    """
    root = root.rstrip("/")
    token = configured_token(token)
    app.include_router(router(trail, feed or Feed(trail.store), token=token, root=root))
    app.mount(
        f"{root}/static",
        StaticFiles(packages=[("tasktrail.web", "static")]),
        name="tasktrail-static",
    )


__all__ = ["mount"]
