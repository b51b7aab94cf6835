"""Immutable values: what callers pass in (``Link``) and what the store hands back.

Records are built from rows and never mutated; a changed task is a new record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, TypeVar

from tasktrail.errors import InvalidInput
from tasktrail.states import ItemStatus, Status
from tasktrail.text import refuse_nul

_MAX_RESOURCE_LENGTH = {"type": 100, "id": 200, "role": 100}
_STATUSES = {status.value: status for status in Status}
_Record = TypeVar("_Record")


def _built(cls: type[_Record], values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> _Record:
    """An instance of the frozen dataclass ``cls`` whose fields are ``values`` (by name, or
    as name and value pairs; every field, already of its type), made without calling its
    ``__init__``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``: for a
    task's 29 fields that was most of the cost of building a record from a row, and a page
    of tasks builds dozens of them with their links.
    """
    record = object.__new__(cls)
    record.__dict__.update(values)
    return record


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
        """The link stored in ``row`` (a mapping with a key per field)."""
        return cls.from_values([row[name] for name in LINK_FIELDS])

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> LinkRecord:
        """The link whose fields are ``values``, in ``LINK_FIELDS`` order."""
        task_id, resource_type, resource_id, role, created_at = values
        # Named here rather than zipped with LINK_FIELDS: the zip cost more than the
        # dataclass's own __init__, and a page of tasks builds three links per task.
        return _built(
            cls,
            {"task_id": task_id, "resource_type": resource_type, "resource_id": resource_id,
             "role": role, "created_at": created_at},
        )  # fmt: skip


#: ``LinkRecord``'s fields, in the order ``LinkRecord.from_values`` takes them.
LINK_FIELDS = ("task_id", "resource_type", "resource_id", "role", "created_at")


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
        """The task stored in ``row`` (a mapping with a key per column of the tasks
        table), with ``links`` and ``role``."""
        return cls.from_values([row[name] for name in TASK_FIELDS], links=links, role=role)

    @classmethod
    def from_values(
        cls,
        values: Sequence[Any],
        *,
        links: tuple[LinkRecord, ...] = (),
        role: str | None = None,
    ) -> TaskRecord:
        """The task whose stored columns are ``values``, in ``TASK_FIELDS`` order (any
        further values are ignored), with ``links`` and ``role``: as ``from_row`` builds
        it from the same row."""
        # The columns go straight into the record's own dict, which is then finished in
        # place: a dict of them made first was a third of the cost of building a task.
        record = _built(cls, zip(TASK_FIELDS, values, strict=False))
        stored = record.__dict__
        stored["status"] = _STATUSES[stored["status"]]
        stored["progress"] = float(stored["progress"])
        stored.update(links=links, role=role, deduplicated=False)
        return record

    @property
    def is_active(self) -> bool:
        """Whether a worker will still act on this task."""
        return self.status.is_active

    def evolve(self, **changes: Any) -> TaskRecord:
        """A copy with ``changes`` applied; the record itself never changes."""
        return replace(self, **changes)


#: The fields of ``TaskRecord`` stored as columns of the tasks table (all but ``links``,
#: ``role`` and ``deduplicated``), in the order ``TaskRecord.from_values`` takes them.
TASK_FIELDS = tuple(
    f.name for f in fields(TaskRecord) if f.name not in {"links", "role", "deduplicated"}
)


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
class Claimed:
    """A task a worker claimed, and whether another task it could take was queued then."""

    task: TaskRecord
    more_queued: bool


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
