"""Immutable values: what callers pass in (``Link``) and what the store hands back.

Records are built from rows and never mutated; a changed task is a new record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tasktrail.errors import InvalidInput
from tasktrail.states import ItemStatus, Status
from tasktrail.text import refuse_nul

_MAX_RESOURCE_LENGTH = {"type": 100, "id": 200, "role": 100}


@dataclass(frozen=True)
class Link:
    """A domain object a task works on: ``Link("roadmap", "r1", role="retry_tutorial")``.

    A task may have many links, and a resource many tasks. Raises ``InvalidInput`` for an
    empty or over-long type or id.
    """

    type: str
    id: str
    role: str | None = None

    def __post_init__(self) -> None:
        for name in ("type", "id", "role"):
            value = getattr(self, name)
            if value is None and name == "role":
                continue
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"link {name} must be a non-empty string, got {value!r}")
            refuse_nul(value, f"link {name}")
            if len(value) > _MAX_RESOURCE_LENGTH[name]:
                raise InvalidInput(
                    f"link {name} is longer than {_MAX_RESOURCE_LENGTH[name]} characters"
                )


@dataclass(frozen=True)
class LinkRecord:
    """A stored link of one task to one resource."""

    task_id: str
    resource_type: str
    resource_id: str
    role: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> LinkRecord:
        return cls(
            task_id=row["task_id"],
            resource_type=row["resource_type"],
            resource_id=row["resource_id"],
            role=row["role"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class ItemCounts:
    """How many of a task's items are in each status."""

    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class TaskRecord:
    """One task as stored. ``role`` is the link's role when it came from ``tasks_for``."""

    id: str
    name: str
    params: dict[str, Any]
    status: Status
    progress: float
    current_step: str | None
    result: Any
    error: str | None
    attempts: int
    max_attempts: int
    backoff: float
    queue: str
    priority: int
    dedupe_key: str | None
    description: str | None
    run_after: datetime | None
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested_at: datetime | None
    worker: str | None
    external_id: str | None
    version: int
    links: tuple[LinkRecord, ...] = ()
    role: str | None = None
    #: True when ``submit`` found an existing task with the same ``dedupe_key``.
    deduplicated: bool = field(default=False, compare=False)

    @classmethod
    def from_row(
        cls,
        row: Mapping[Any, Any],
        *,
        links: tuple[LinkRecord, ...] = (),
        role: str | None = None,
    ) -> TaskRecord:
        return cls(
            id=row["id"],
            name=row["name"],
            params=row["params"],
            status=Status(row["status"]),
            progress=float(row["progress"]),
            current_step=row["current_step"],
            result=row["result"],
            error=row["error"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            backoff=row["backoff"],
            queue=row["queue"],
            priority=row["priority"],
            dedupe_key=row["dedupe_key"],
            description=row["description"],
            run_after=row["run_after"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            queued_at=row["queued_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            heartbeat_at=row["heartbeat_at"],
            cancel_requested_at=row["cancel_requested_at"],
            worker=row["worker"],
            external_id=row["external_id"],
            version=row["version"],
            links=links,
            role=role,
        )

    @property
    def is_active(self) -> bool:
        """Whether a worker will still act on this task."""
        return self.status.is_active

    def evolve(self, **changes: Any) -> TaskRecord:
        """A copy with ``changes`` applied; the record itself never changes."""
        return replace(self, **changes)


@dataclass(frozen=True)
class EventRecord:
    """One row of a task's history; ``id`` is the global stream cursor."""

    id: int
    task_id: str
    type: str
    from_status: Status | None
    to_status: Status | None
    progress: float | None
    step: str | None
    message: str | None
    data: Any
    actor: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> EventRecord:
        return cls(
            id=row["id"],
            task_id=row["task_id"],
            type=row["type"],
            from_status=Status(row["from_status"]) if row["from_status"] else None,
            to_status=Status(row["to_status"]) if row["to_status"] else None,
            progress=row["progress"],
            step=row["step"],
            message=row["message"],
            data=row["data"],
            actor=row["actor"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class ItemRecord:
    """One named sub-unit of a task."""

    task_id: str
    key: str
    status: ItemStatus
    error: str | None
    attempts: int
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ItemRecord:
        return cls(
            task_id=row["task_id"],
            key=row["key"],
            status=ItemStatus(row["status"]),
            error=row["error"],
            attempts=row["attempts"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learned about one run its worker still owns."""

    task_id: str
    attempt: int
    cancel_requested_at: datetime | None


@dataclass(frozen=True)
class Page:
    """One page of a keyset-paginated listing; pass ``next_cursor`` to get the next."""

    items: tuple[TaskRecord, ...]
    next_cursor: str | None
