"""The JSON bodies of the HTTP API, as Pydantic models. Every field is documented with an
example, so ``/openapi.json`` describes the API completely.

Times are ISO 8601 with a UTC offset (``2026-01-31T16:55:42.123456+00:00``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from tasktrail.records import EventRecord, ItemCounts, LinkRecord, TaskRecord
from tasktrail.staleness import StatusCheck
from tasktrail.states import Status

EXAMPLE_ID = "01JD8X3Q6Y7W2B5N4K9M0P1R2S"
EXAMPLE_TIME = "2026-01-31T16:55:42.123456+00:00"


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give the time a UTC offset, e.g. 2026-01-31T16:55:42+00:00")
    return value.astimezone(UTC)


#: A time in answers: always with its offset (``+00:00``), never a bare ``Z`` or none.
Time = Annotated[
    datetime,
    PlainSerializer(lambda value: value.astimezone(UTC).isoformat(), return_type=str),
]
#: A time in requests: a time without an offset is refused.
AwareTime = Annotated[datetime, AfterValidator(_aware)]


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# -- requests -------------------------------------------------------------------------------


class LinkIn(Strict):
    """A resource to link the task to."""

    type: str = Field(
        min_length=1, max_length=100, description="The resource's type.", examples=["roadmap"]
    )
    id: str = Field(min_length=1, max_length=200, description="The resource's id.", examples=["r1"])
    role: str | None = Field(
        default=None,
        max_length=100,
        description="What the task is to the resource.",
        examples=["retry_tutorial"],
    )


class CreateTask(Strict):
    """A task to create."""

    name: str = Field(
        min_length=1,
        max_length=200,
        description="The registered task function to run.",
        examples=["roadmap.tutorial"],
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the task function (JSON).",
        examples=[{"roadmap_id": "r1", "concept_id": "c1"}],
    )
    links: list[LinkIn] = Field(
        default_factory=list,
        max_length=100,
        description="Resources the task works on.",
        examples=[[{"type": "roadmap", "id": "r1", "role": "retry_tutorial"}]],
    )
    dedupe_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description="At most one task per key: an existing key returns that task (200).",
        examples=["roadmap:r1:c1:tutorial"],
    )
    run_immediately: bool = Field(
        default=True,
        description="Queue the task now; false leaves it `created` until POST …/run.",
        examples=[True],
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Runs allowed before the task fails; default: the function's.",
        examples=[3],
    )
    queue: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Queue to run on; default: the function's.",
        examples=["default"],
    )
    run_after: AwareTime | None = Field(
        default=None,
        description="Do not run before this time (with a UTC offset).",
        examples=[EXAMPLE_TIME],
    )
    description: str | None = Field(
        default=None,
        max_length=2000,
        description="Free text shown beside the task.",
        examples=["Regenerate the tutorial of concept c1"],
    )


#: The most tasks one ``POST /tasks/batch`` creates.
MAX_BATCH = 500


class CreateTasks(Strict):
    """Tasks to create together: all of them, or none when one is refused."""

    tasks: list[CreateTask] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"The tasks, as POST /tasks takes each (1 to {MAX_BATCH}).",
        examples=[[{"name": "roadmap.tutorial", "params": {"roadmap_id": "r1"}}]],
    )


class CancelTask(Strict):
    """Why a task is cancelled."""

    reason: str | None = Field(
        default=None, max_length=2000, description="Recorded on the task's history.",
        examples=["by user"],
    )  # fmt: skip


class RetryTask(Strict):
    """How to retry a task."""

    only_failed_items: bool = Field(
        default=False,
        description="Keep completed items done; rerun only the failed and pending ones.",
        examples=[False],
    )
    force: bool = Field(default=False, description="Also rerun a completed task.", examples=[False])


# -- answers --------------------------------------------------------------------------------


class LinkOut(BaseModel):
    """A resource the task is linked to."""

    type: str = Field(description="The resource's type.", examples=["roadmap"])
    id: str = Field(description="The resource's id.", examples=["r1"])
    role: str | None = Field(description="What the task is to it.", examples=["creation"])

    @classmethod
    def of(cls, link: LinkRecord) -> LinkOut:
        return cls(type=link.resource_type, id=link.resource_id, role=link.role)


class Task(BaseModel):
    """A task as stored."""

    id: str = Field(description="The task's id (time-sortable).", examples=[EXAMPLE_ID])
    name: str = Field(description="The task function's name.", examples=["roadmap.tutorial"])
    status: Status = Field(description="Where the task is in its life.", examples=["queued"])
    progress: float = Field(description="Percent done, 0 to 100.", examples=[40.0])
    current_step: str | None = Field(
        description="What the task said it is doing.", examples=["drafting"]
    )
    params: dict[str, Any] = Field(
        description="The task function's arguments.", examples=[{"roadmap_id": "r1"}]
    )
    result: Any = Field(description="What the function returned (JSON).", examples=[{"ok": 1}])
    error: str | None = Field(
        description="Why the last run failed; null unless failed or partially failed.",
        examples=["RuntimeError: the model timed out"],
    )
    attempts: int = Field(description="Runs started so far.", examples=[1])
    max_attempts: int = Field(description="Runs allowed.", examples=[3])
    queue: str = Field(description="The queue it runs on.", examples=["default"])
    dedupe_key: str | None = Field(
        description="Its deduplication key.", examples=["roadmap:r1:c1:tutorial"]
    )
    description: str | None = Field(
        description="Free text.", examples=["Regenerate the tutorial of concept c1"]
    )
    created_at: Time = Field(description="When it was submitted.", examples=[EXAMPLE_TIME])
    updated_at: Time = Field(description="When it last changed.", examples=[EXAMPLE_TIME])
    queued_at: Time | None = Field(description="When it was last queued.", examples=[None])
    started_at: Time | None = Field(
        description="When its last run started.", examples=[EXAMPLE_TIME]
    )
    completed_at: Time | None = Field(
        description="When it finished; null while it is not finished.", examples=[None]
    )
    run_after: Time | None = Field(description="Not run before this time.", examples=[None])
    cancel_requested_at: Time | None = Field(
        description="When a cancel of the running task was asked for.", examples=[None]
    )
    links: list[LinkOut] = Field(description="Resources the task works on.")

    @classmethod
    def of(cls, record: TaskRecord, **extra: Any) -> Any:
        return cls(
            id=record.id,
            name=record.name,
            status=record.status,
            progress=record.progress,
            current_step=record.current_step,
            params=record.params,
            result=record.result,
            error=record.error,
            attempts=record.attempts,
            max_attempts=record.max_attempts,
            queue=record.queue,
            dedupe_key=record.dedupe_key,
            description=record.description,
            created_at=record.created_at,
            updated_at=record.updated_at,
            queued_at=record.queued_at,
            started_at=record.started_at,
            completed_at=record.completed_at,
            run_after=record.run_after,
            cancel_requested_at=record.cancel_requested_at,
            links=[LinkOut.of(link) for link in record.links],
            **extra,
        )


class CreatedTask(Task):
    """The task created, or found by its ``dedupe_key``."""

    deduplicated: bool = Field(
        description="True when a task with this dedupe_key already existed.", examples=[False]
    )


class ItemSummary(BaseModel):
    """How many of a task's items are in each status."""

    total: int = Field(description="All items.", examples=[21])
    pending: int = Field(description="Not started (or reset by a retry).", examples=[0])
    running: int = Field(description="Being worked on.", examples=[1])
    completed: int = Field(description="Done.", examples=[18])
    failed: int = Field(description="Failed.", examples=[2])

    @classmethod
    def of(cls, counts: ItemCounts) -> ItemSummary:
        return cls(
            total=counts.total,
            pending=counts.pending,
            running=counts.running,
            completed=counts.completed,
            failed=counts.failed,
        )


class TaskDetail(Task):
    """A task with the summary of its items."""

    items: ItemSummary = Field(description="The task's items, counted per status.")


class LinkedTask(Task):
    """A task linked to a resource."""

    role: str | None = Field(
        description="The role of the link to the resource asked about.",
        examples=["retry_tutorial"],
    )


class TaskStatus(BaseModel):
    """Just where a task is."""

    id: str = Field(description="The task's id.", examples=[EXAMPLE_ID])
    status: Status = Field(description="Its status.", examples=["running"])
    progress: float = Field(description="Percent done.", examples=[40.0])
    current_step: str | None = Field(description="What it is doing.", examples=["drafting"])
    error: str | None = Field(description="Why it failed.", examples=[None])
    attempts: int = Field(description="Runs started.", examples=[1])
    max_attempts: int = Field(description="Runs allowed.", examples=[3])
    started_at: Time | None = Field(description="Last run's start.", examples=[EXAMPLE_TIME])
    completed_at: Time | None = Field(description="When it finished.", examples=[None])
    updated_at: Time = Field(description="When it last changed.", examples=[EXAMPLE_TIME])

    @classmethod
    def of(cls, record: TaskRecord) -> TaskStatus:
        return cls(
            id=record.id,
            status=record.status,
            progress=record.progress,
            current_step=record.current_step,
            error=record.error,
            attempts=record.attempts,
            max_attempts=record.max_attempts,
            started_at=record.started_at,
            completed_at=record.completed_at,
            updated_at=record.updated_at,
        )


class TaskPage(BaseModel):
    """One page of tasks, newest first."""

    items: list[Task] = Field(description="The tasks.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last.",
        examples=[EXAMPLE_ID],
    )


class Event(BaseModel):
    """One event of a task's history; ``id`` is the stream cursor."""

    id: int = Field(description="Global, increasing event id: the resume cursor.", examples=[42])
    task_id: str = Field(description="The task.", examples=[EXAMPLE_ID])
    type: str = Field(
        description="transition, progress, item, log, cancel_requested, …",
        examples=["transition"],
    )
    status: Status | None = Field(
        description="The status the event moved the task to; null if it did not move it.",
        examples=["queued"],
    )
    from_status: Status | None = Field(description="The status it left.", examples=["cancelled"])
    progress: float | None = Field(description="Percent done, if reported.", examples=[0.0])
    step: str | None = Field(description="The step reported.", examples=["drafting"])
    message: str | None = Field(description="Text of the event.", examples=["retry"])
    data: Any = Field(description="Details (JSON).", examples=[{"transition": "retry"}])
    at: Time = Field(description="When it happened.", examples=[EXAMPLE_TIME])

    @classmethod
    def of(cls, event: EventRecord) -> Event:
        return cls(
            id=event.id,
            task_id=event.task_id,
            type=event.type,
            status=event.to_status,
            from_status=event.from_status,
            progress=event.progress,
            step=event.step,
            message=event.message,
            data=event.data,
            at=event.created_at,
        )


class StatusCheckOut(BaseModel):
    """Whether anything is working on a resource, and which items look stuck."""

    resource_type: str = Field(description="The resource's type.", examples=["roadmap"])
    resource_id: str = Field(description="The resource's id.", examples=["r1"])
    has_active_task: bool = Field(
        description="Whether a queued, scheduled or running task is linked to it.",
        examples=[True],
    )
    active_tasks: list[LinkedTask] = Field(description="Those tasks, newest first.")
    stale_items: list[dict[str, Any]] = Field(
        description="Items the app's stale probe says are in progress that no active task "
        "covers, as the probe returned them.",
        examples=[[{"item": "c7", "content_type": "tutorial", "status": "generating"}]],
    )

    @classmethod
    def of(cls, check: StatusCheck) -> StatusCheckOut:
        return cls(
            resource_type=check.resource_type,
            resource_id=check.resource_id,
            has_active_task=check.has_active_task,
            active_tasks=[LinkedTask.of(t, role=t.role) for t in check.active_tasks],
            stale_items=list(check.stale_items),
        )


class ErrorOut(BaseModel):
    """What went wrong and what to do about it."""

    detail: str = Field(
        description="A sentence for a human.",
        examples=["cannot retry task '01JD…': it is running; only failed tasks can be retried"],
    )
    current_status: Status | None = Field(
        default=None,
        description="On a 409: the task's status now.",
        examples=["running"],
    )


#: Answers every API route may give, documented once for all of them.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "An API token is configured and was not sent."},
    413: {"model": ErrorOut, "description": "The request body is over the size limit."},
    422: {"model": ErrorOut, "description": "A parameter or the body is invalid."},
}
