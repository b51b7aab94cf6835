"""The dashboard's routes: four pages, three actions, a login, the live stream and
``/metrics``. Pages read through ``Trail``; actions go through the same ``Trail`` calls
(and so the same state machine) as the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from tasktrail.api.events import EventJson, resume_point, sse_stream
from tasktrail.errors import InvalidInput, InvalidTransition, TaskNotFound
from tasktrail.feed import Feed
from tasktrail.metrics import CONTENT_TYPE, exposition
from tasktrail.records import Page
from tasktrail.states import Status
from tasktrail.trail import Trail
from tasktrail.web import auth, present

PAGE_SIZE = 50
#: How many of a task's newest events its page shows; the page says how many it left out.
TIMELINE_LIMIT = 1_000
#: Content Security Policy of every page: our own scripts and styles only, so even markup
#: that slipped through escaping could not run a script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
# The tasks page's filters, as query parameters (module level: FastAPI resolves them late).
StatusParam = Annotated[str | None, Query(max_length=20)]
NameParam = Annotated[str | None, Query(max_length=200)]
QueueParam = Annotated[str | None, Query(max_length=100)]
ResourceParam = Annotated[str | None, Query(max_length=301)]
CursorParam = Annotated[str | None, Query(max_length=64)]
#: Unfiltered status counts on the tasks page stop at this many (shown as "10,000+"):
#: counting every row of a million-task table on each render costs more than the page.
COUNT_CAP = 10_000


@dataclass(frozen=True)
class TaskFilters:
    """The tasks page's filters; None where unset."""

    status: str | None = None
    name: str | None = None
    queue: str | None = None
    resource: str | None = None


def task_filters(
    status: StatusParam = None,
    name: NameParam = None,
    queue: QueueParam = None,
    resource: ResourceParam = None,
) -> TaskFilters:
    """The filters of a tasks page request; an empty field counts as unset."""
    return TaskFilters(status or None, name or None, queue or None, resource or None)


Filters = Annotated[TaskFilters, Depends(task_filters)]
#: What an inline SVG chart covers on the overview page.
CHART_WINDOW = timedelta(hours=1)
CHART_BUCKETS = 12


def templates() -> jinja2.Environment:
    """The template environment: autoescape on for everything, undefined names fail."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tasktrail.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["pretty_json"] = present.pretty_json
    env.filters["when"] = present.when
    env.filters["age"] = present.age
    env.filters["duration"] = present.duration
    return env


def router(trail: Trail, feed: Feed, *, token: str | None, root: str = "") -> APIRouter:
    """The dashboard's routes; ``root`` is the path it is mounted under ("" for ``/``)."""
    env = templates()
    web = APIRouter(prefix=root, include_in_schema=False)
    as_json = EventJson()
    cookie_path = root or "/"

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        csrf = auth.csrf_token(request)
        html = env.get_template(name).render(
            root=root, csrf=csrf, csrf_field=auth.CSRF_FIELD, login=token is not None, **context
        )
        response = HTMLResponse(html, status_code=status_code)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        auth.remember_csrf(response, request, csrf, cookie_path)
        return response

    def login_first(request: Request) -> Response | None:
        if auth.is_logged_in(request, token):
            return None
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{root}/login?{urlencode({'next': target})}", status_code=303)

    async def posted(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        auth.check_same_site(request, form)
        return form

    @web.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        return page(request, "login.html", next=auth.safe_next(next, root), failed=False)

    @web.post("/login")
    async def login(request: Request) -> Response:
        form = await posted(request)
        target = auth.safe_next(form.get("next"), root)
        if token is None:
            return RedirectResponse(target, status_code=303)
        if not auth.token_matches(form.get("token", ""), token):
            return page(request, "login.html", status_code=401, next=target, failed=True)
        response = RedirectResponse(target, status_code=303)
        auth.set_session(response, request, token, cookie_path)
        return response

    @web.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request)
        response = RedirectResponse(f"{root}/login", status_code=303)
        response.delete_cookie(auth.SESSION_COOKIE, path=cookie_path)
        return response

    def tasks_view(chosen: TaskFilters, cursor: str | None, *, rows: bool = True) -> dict[str, Any]:
        """What the tasks page and its fragments show for these filters and page (without
        reading the page's tasks when ``rows`` is false)."""
        filters = asdict(chosen)
        try:
            pair = _resource(filters["resource"])
            listing = Page(items=(), next_cursor=None)
            if rows:
                listing = trail.list_tasks(
                    status=filters["status"],
                    name=filters["name"],
                    queue=filters["queue"],
                    resource=pair,
                    cursor=cursor or None,
                    limit=PAGE_SIZE,
                )
        except InvalidInput as exc:
            raise HTTPException(422, str(exc)) from None
        # Capped counts are short scans of the (status, id) index; under a name or queue
        # filter they would each walk that filter's rows, so one exact GROUP BY is cheaper.
        by_status_alone = filters["name"] is None and filters["queue"] is None
        counts = trail.store.status_counts(
            name=filters["name"],
            queue=filters["queue"],
            resource=pair,
            cap=COUNT_CAP if by_status_alone else None,
        )
        shown = sum(min(count, COUNT_CAP) for count in counts.values())
        capped = any(count > COUNT_CAP for count in counts.values())
        query = {k: v for k, v in filters.items() if v is not None}
        kept = {k: v for k, v in query.items() if k != "status"}
        here = {**query, **({"cursor": cursor} if cursor else {})}
        next_url = None
        if listing.next_cursor is not None:
            next_url = f"{root}/?{urlencode({**query, 'cursor': listing.next_cursor})}"
        return {
            "tasks": listing.items,
            "counts": [(s, present.count_label(counts.get(s, 0), COUNT_CAP)) for s in Status],
            "total": f"{shown:,}" + ("+" if capped else ""),
            "filters": filters,
            "status_url": lambda s: f"{root}/?{urlencode({**kept, 'status': s})}",
            "next_url": next_url,
            "first_url": f"{root}/?{urlencode(query)}" if cursor else None,
            "rows_url": f"{root}/fragments/rows?{urlencode(here)}",
            "counts_url": f"{root}/fragments/counts?{urlencode(query)}",
        }

    @web.get("/")
    def tasks_page(request: Request, filters: Filters, cursor: CursorParam = None) -> Response:
        if (redirect := login_first(request)) is not None:
            return redirect
        # Read the cursor first: the stream then resumes right after what this page shows.
        last = trail.store.last_event_id()
        view = tasks_view(filters, cursor)
        return page(request, "tasks.html", stream=f"{root}/stream?after={last}", **view)

    @web.get("/fragments/rows")
    def rows_fragment(request: Request, filters: Filters, cursor: CursorParam = None) -> Response:
        """The tasks page's table rows, fetched again by htmx when the stream reports a
        change: new matching tasks appear, ones that stopped matching leave."""
        if not auth.is_logged_in(request, token):
            raise HTTPException(401, "log in first")
        view = tasks_view(filters, cursor)
        return page(request, "_rows.html", **view)

    @web.get("/fragments/counts")
    def counts_fragment(request: Request, filters: Filters) -> Response:
        """The tasks page's counts per status, fetched again like the rows."""
        if not auth.is_logged_in(request, token):
            raise HTTPException(401, "log in first")
        view = tasks_view(filters, None, rows=False)
        return page(request, "_counts.html", **view)

    @web.get("/tasks/{task_id}")
    def task_page(request: Request, task_id: str) -> Response:
        if (redirect := login_first(request)) is not None:
            return redirect
        # History before the task: a change in between is then in the live stream, which
        # reloads the page, rather than lost between the two reads. The stream resumes
        # after the newest event shown, so it never replays one the page already has.
        history = trail.store.task_history(task_id, TIMELINE_LIMIT)
        try:
            task = trail.get(task_id)
        except TaskNotFound:
            return page(request, "missing.html", status_code=404, what=f"task {task_id}")
        counts = trail.item_counts(task_id)
        last = history.events[-1].id if history.events else trail.store.last_event_id()
        return page(
            request,
            "task.html",
            task=task,
            items=trail.items(task_id),
            counts=counts,
            events=history.events,
            omitted=history.omitted,
            traceback=trail.store.last_traceback(task_id),
            actions=present.actions(task.status, counts.failed),
            stream=f"{root}/stream?{urlencode({'task_id': task.id, 'after': last})}",
        )

    @web.post("/tasks/{task_id}/{action}")
    async def act(request: Request, task_id: str, action: str) -> Response:
        if not auth.is_logged_in(request, token):
            raise HTTPException(401, "log in first")
        await posted(request)
        try:
            if action == "cancel":
                await trail.cancel_async(task_id, reason="cancelled from the dashboard",
                                         actor="dashboard")  # fmt: skip
            elif action == "retry":
                await trail.retry_async(task_id, actor="dashboard")
            elif action == "retry-failed-items":
                await trail.retry_async(task_id, only_failed_items=True, actor="dashboard")
            else:
                raise HTTPException(404, f"no action {action!r}")
        except TaskNotFound:
            raise HTTPException(404, f"no task {task_id}") from None
        except InvalidTransition as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"{root}/tasks/{task_id}", status_code=303)

    @web.get("/resources/{resource_type}/{resource_id:path}")
    def resource_page(
        request: Request, resource_type: str, resource_id: str, cursor: CursorParam = None
    ) -> Response:
        if (redirect := login_first(request)) is not None:
            return redirect
        last = trail.store.last_event_id()
        check = trail.status_check(resource_type, resource_id)
        linked = trail.store.tasks_for(
            resource_type, resource_id, limit=PAGE_SIZE + 1, before_id=cursor or None
        )
        here = f"{root}/resources/{quote(resource_type, safe='')}/{quote(resource_id, safe='')}"
        shown = linked[:PAGE_SIZE]
        return page(
            request,
            "resource.html",
            resource_type=resource_type,
            resource_id=resource_id,
            tasks=shown,
            next_url=f"{here}?{urlencode({'cursor': shown[-1].id})}"
            if len(linked) > PAGE_SIZE
            else None,
            first_url=here if cursor else None,
            check=check,
            stream=f"{root}/stream?"
            + urlencode(
                {"resource_type": resource_type, "resource_id": resource_id, "after": last}
            ),
        )

    def overview_view() -> dict[str, Any]:
        """What the overview shows: per queue, counts, lag and the last hour's charts."""
        store = trail.store
        counts = store.queue_status_counts()
        now = store.clock()
        oldest = store.oldest_queued()
        flow = store.throughput(window=CHART_WINDOW, buckets=CHART_BUCKETS)
        queues = sorted({queue for queue, _ in counts} | set(flow.completed))
        labels = present.window_labels(flow.starts, flow.width)
        return {
            "statuses": list(Status),
            "queues": [(q, [counts.get((q, s), 0) for s in Status], oldest.get(q)) for q in queues],
            "now": now,
            "charts": [present.queue_charts(q, *flow.of(q), labels) for q in queues],
            "recoveries": store.lost_recoveries(),
        }

    @web.get("/overview")
    def overview_page(request: Request) -> Response:
        if (redirect := login_first(request)) is not None:
            return redirect
        return page(request, "overview.html", stream=None, **overview_view())

    @web.get("/fragments/overview")
    def overview_fragment(request: Request) -> Response:
        """The overview's content, which htmx fetches again every few seconds."""
        if not auth.is_logged_in(request, token):
            raise HTTPException(401, "log in first")
        return page(request, "_overview.html", **overview_view())

    @web.get("/stream")
    async def stream(
        request: Request,
        task_id: Annotated[str | None, Query(max_length=64)] = None,
        resource_type: Annotated[str | None, Query(max_length=100)] = None,
        resource_id: Annotated[str | None, Query(max_length=200)] = None,
        after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        if not auth.is_logged_in(request, token):
            raise HTTPException(401, "log in first")
        resource = (resource_type, resource_id) if resource_type and resource_id else None
        try:
            start = resume_point(last_event_id, after)
        except InvalidInput as exc:
            raise HTTPException(422, str(exc)) from None
        events = sse_stream(feed, as_json, task_id=task_id, resource=resource, after=start)
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @web.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not auth.is_logged_in(request, token):
            raise HTTPException(
                401, "send 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
            )
        body = await run_in_threadpool(exposition, trail.store)
        return Response(body, media_type=CONTENT_TYPE)

    return web


def _resource(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    kind, sep, key = value.partition(":")
    if not sep or not kind or not key:
        raise InvalidInput("resource must be written type:id, e.g. roadmap:r1")
    return (kind, key)
