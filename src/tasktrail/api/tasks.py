"""``/tasks``: create, list, read, run, cancel and retry tasks, and read their history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from tasktrail.api.errors import ApiRoute
from tasktrail.api.models import (
    COMMON_ERRORS,
    CancelTask,
    CreatedTask,
    CreateTask,
    CreateTasks,
    ErrorOut,
    Event,
    ItemSummary,
    RetryTask,
    Task,
    TaskDetail,
    TaskPage,
    TaskStatus,
)
from tasktrail.errors import InvalidInput
from tasktrail.ids import is_task_id
from tasktrail.records import Link
from tasktrail.states import Status
from tasktrail.submission import Submission
from tasktrail.trail import Trail

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No task with this id."}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "Not allowed in the task's status."}
}


def router(trail: Trail, *, route_class: type[ApiRoute] = ApiRoute) -> APIRouter:
    """The ``/tasks`` routes, working on ``trail``."""
    api = APIRouter(
        prefix="/tasks", tags=["tasks"], route_class=route_class, responses=COMMON_ERRORS
    )

    @api.post(
        "",
        status_code=201,
        response_model=CreatedTask,
        responses={
            200: {"model": CreatedTask, "description": "A task with this dedupe_key existed."},
            404: {"model": ErrorOut, "description": "No task function has this name."},
        },
    )
    async def create_task(body: CreateTask, response: Response) -> CreatedTask:
        """Create a task (queued at once unless `run_immediately` is false). 201 with the
        new task; 200 with the existing one when its `dedupe_key` is taken."""
        record = await trail.submit_async(**_arguments(body), actor="api")
        if record.deduplicated:
            response.status_code = 200
        created: CreatedTask = CreatedTask.of(record, deduplicated=record.deduplicated)
        return created

    @api.post(
        "/batch",
        status_code=201,
        response_model=list[CreatedTask],
        responses={
            200: {"model": list[CreatedTask], "description": "Every task's dedupe_key existed."},
            404: {"model": ErrorOut, "description": "A task's name has no task function."},
        },
    )
    async def create_tasks(body: CreateTasks, response: Response) -> list[CreatedTask]:
        """Create many tasks in one transaction, all or none; the answer lists them in the
        request's order. 201 when any was created; 200 when every one's `dedupe_key` was
        taken (by an existing task, or by an earlier task of the batch)."""
        records = await trail.submit_many_async(
            [Submission(**_arguments(task)) for task in body.tasks], actor="api"
        )
        if all(record.deduplicated for record in records):
            response.status_code = 200
        return [CreatedTask.of(record, deduplicated=record.deduplicated) for record in records]

    @api.get("", response_model=TaskPage)
    async def list_tasks(
        status: Annotated[list[Status] | None, Query(description="Only these statuses.")] = None,
        name: Annotated[str | None, Query(max_length=200, description="Only this name.")] = None,
        resource_type: Annotated[
            str | None, Query(max_length=100, description="With resource_id: linked tasks.")
        ] = None,
        resource_id: Annotated[
            str | None, Query(max_length=200, description="With resource_type.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
        cursor: Annotated[
            str | None, Query(max_length=64, description="`next_cursor` of the previous page.")
        ] = None,
    ) -> TaskPage:
        """Tasks newest first, filtered, one page at a time."""
        if (resource_type is None) != (resource_id is None):
            raise InvalidInput("give resource_type and resource_id together, or neither")
        if cursor is not None and not is_task_id(cursor):
            raise InvalidInput(
                f"cursor must be the next_cursor of a previous page (a task id), got "
                f"{cursor[:40]!r}; leave it out for the first page"
            )
        resource = None if resource_type is None or resource_id is None else (
            resource_type, resource_id
        )  # fmt: skip
        page = await trail.list_tasks_async(
            status=status, name=name, resource=resource, cursor=cursor, limit=limit
        )
        return TaskPage(items=[Task.of(t) for t in page.items], next_cursor=page.next_cursor)

    @api.get("/{task_id}", response_model=TaskDetail, responses=NOT_FOUND)
    async def get_task(task_id: str) -> TaskDetail:
        """The task, its links and a count of its items per status."""
        record = await trail.get_async(task_id)
        counts = await trail.item_counts_async(task_id)
        detail: TaskDetail = TaskDetail.of(record, items=ItemSummary.of(counts))
        return detail

    @api.get("/{task_id}/status", response_model=TaskStatus, responses=NOT_FOUND)
    async def get_status(task_id: str) -> TaskStatus:
        """Just the task's status, progress and times: cheap to poll."""
        return TaskStatus.of(await trail.get_async(task_id))

    @api.post("/{task_id}/run", response_model=Task, responses={**NOT_FOUND, **CONFLICT})
    async def run_task(task_id: str) -> Task:
        """Queue a task created with `run_immediately: false`."""
        task: Task = Task.of(await trail.run_async(task_id, actor="api"))
        return task

    @api.post("/{task_id}/cancel", response_model=Task, responses={**NOT_FOUND, **CONFLICT})
    async def cancel_task(task_id: str, body: Annotated[CancelTask | None, Body()] = None) -> Task:
        """Cancel a waiting task at once; ask a running one to stop (it stays `running`
        with `cancel_requested_at` set until its worker acknowledges). 409 when finished."""
        reason = body.reason if body is not None else None
        task: Task = Task.of(await trail.cancel_async(task_id, reason=reason, actor="api"))
        return task

    @api.post("/{task_id}/retry", response_model=Task, responses={**NOT_FOUND, **CONFLICT})
    async def retry_task(task_id: str, body: Annotated[RetryTask | None, Body()] = None) -> Task:
        """Queue a failed, cancelled or partially failed task again. The answer is already
        `queued`, with `completed_at`, `error` and `result` null. 409 otherwise."""
        options = body or RetryTask()
        record = await trail.retry_async(
            task_id,
            only_failed_items=options.only_failed_items,
            force=options.force,
            actor="api",
        )
        task: Task = Task.of(record)
        return task

    @api.get("/{task_id}/events", response_model=list[Event], responses=NOT_FOUND)
    async def task_events(
        task_id: str,
        after: Annotated[int, Query(ge=0, le=2**62, description="Only events after this id.")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 1000,
    ) -> list[Event]:
        """The task's history after the cursor `after`, oldest first."""
        await trail.get_async(task_id)
        events = await trail.events_async(task_id, after=after, limit=limit)
        return [Event.of(e) for e in events]

    return api


def _arguments(body: CreateTask) -> dict[str, Any]:
    """``body`` as the arguments of ``submit`` (and of a ``Submission``)."""
    return {
        "name": body.name,
        "params": body.params,
        "links": [Link(link.type, link.id, link.role) for link in body.links],
        "dedupe_key": body.dedupe_key,
        "run": body.run_immediately,
        "max_attempts": body.max_attempts,
        "queue": body.queue,
        "run_after": body.run_after,
        "description": body.description,
    }
