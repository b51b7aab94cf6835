"""The task state machine: statuses, the allowed transitions, and what each one writes.

This module is pure: no I/O, no SQLAlchemy. The store asks it two questions — *may this
transition leave the current status?* and *which columns does it set?* — and turns the
answers into one compare-and-set ``UPDATE`` plus one event row.

::

    created ──run──▶ queued ──claim──▶ running ──▶ completed | partial_failure | failed | cancelled
                       ▲  ▲                │
                       │  └── due ── scheduled ◀── failure with attempts left (backoff)
                       │                   │
                       └──── retry from failed | cancelled | partial_failure (| completed, forced)

Every edge, and why it exists:

``run``           created → queued. A task submitted with ``run=False`` waits for this.
``schedule``      created → scheduled. ``run`` on a task whose ``run_after`` is in the future.
``claim``         queued → running. A worker takes the task; one attempt starts.
``due``           scheduled → queued. The backoff (or ``run_after``) has elapsed.
``complete``      running → completed.
``partial_fail``  running → partial_failure. The function returned but some items failed.
``fail``          running → failed. An error with no attempts left, or not retryable.
``back_off``      running → scheduled. An error with attempts left; ``run_after`` says when.
``cancel``        created | queued | scheduled | running → cancelled. A waiting task is
                  cancelled at once; a running one only when its worker acknowledges
                  (or a grace period passes), see ``Trail.cancel``.
``requeue``       running → queued. The worker is shutting down; the run did not finish.
``lose``          running → scheduled | failed. The reaper found the worker's heartbeat stale.
``retry``         failed | cancelled | partial_failure → queued (completed too, when forced).

Entering ``queued`` again wipes everything a previous run left behind (``completed_at``,
``error``, ``result``, progress) — the bug of seed 002, where a retried task kept showing
"cancelled" because those fields survived the retry, cannot happen.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final


class Status(enum.StrEnum):
    """A task's status."""

    CREATED = "created"
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL_FAILURE = "partial_failure"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_active(self) -> bool:
        """Whether a worker will still act on a task in this status."""
        return self in ACTIVE

    @property
    def is_terminal(self) -> bool:
        """Whether the task has finished (until a retry)."""
        return self in TERMINAL


class ItemStatus(enum.StrEnum):
    """The status of one named item inside a task."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


ACTIVE: Final = frozenset({Status.QUEUED, Status.SCHEDULED, Status.RUNNING})
TERMINAL: Final = frozenset(
    {Status.COMPLETED, Status.PARTIAL_FAILURE, Status.FAILED, Status.CANCELLED}
)
#: Statuses in which ``error`` carries a message; everywhere else it is null.
ERROR_STATUSES: Final = frozenset({Status.FAILED, Status.PARTIAL_FAILURE})
RETRYABLE: Final = frozenset({Status.FAILED, Status.CANCELLED, Status.PARTIAL_FAILURE})


class _Now:
    """Marker: the store substitutes the transaction's timestamp."""

    def __repr__(self) -> str:
        return "NOW"


class _Increment:
    """Marker: the store adds one to the column's current value."""

    def __repr__(self) -> str:
        return "INCREMENT"


NOW: Final = _Now()
INCREMENT: Final = _Increment()


@dataclass(frozen=True)
class Transition:
    """One named edge (or fan of edges) of the state machine."""

    name: str
    sources: frozenset[Status]
    target: Status

    def allows(self, status: Status) -> bool:
        """Whether this transition may leave ``status``."""
        return status in self.sources


def _t(name: str, sources: set[Status], target: Status) -> Transition:
    return Transition(name, frozenset(sources), target)


S = Status
RUN: Final = _t("run", {S.CREATED}, S.QUEUED)
SCHEDULE: Final = _t("schedule", {S.CREATED}, S.SCHEDULED)
CLAIM: Final = _t("claim", {S.QUEUED}, S.RUNNING)
DUE: Final = _t("due", {S.SCHEDULED}, S.QUEUED)
COMPLETE: Final = _t("complete", {S.RUNNING}, S.COMPLETED)
PARTIAL_FAIL: Final = _t("partial_fail", {S.RUNNING}, S.PARTIAL_FAILURE)
FAIL: Final = _t("fail", {S.RUNNING}, S.FAILED)
BACK_OFF: Final = _t("back_off", {S.RUNNING}, S.SCHEDULED)
CANCEL: Final = _t("cancel", {S.CREATED, S.QUEUED, S.SCHEDULED, S.RUNNING}, S.CANCELLED)
REQUEUE: Final = _t("requeue", {S.RUNNING}, S.QUEUED)
LOSE_RETRY: Final = _t("lose", {S.RUNNING}, S.SCHEDULED)
LOSE_FAIL: Final = _t("lose", {S.RUNNING}, S.FAILED)
RETRY: Final = _t("retry", set(RETRYABLE), S.QUEUED)
FORCE_RETRY: Final = _t("retry", set(RETRYABLE) | {S.COMPLETED}, S.QUEUED)

TRANSITIONS: Final[tuple[Transition, ...]] = (
    RUN, SCHEDULE, CLAIM, DUE, COMPLETE, PARTIAL_FAIL, FAIL, BACK_OFF, CANCEL, REQUEUE,
    LOSE_RETRY, LOSE_FAIL, RETRY, FORCE_RETRY,
)  # fmt: skip


def allowed_targets(status: Status) -> frozenset[Status]:
    """Every status the machine may move to from ``status``."""
    return frozenset(t.target for t in TRANSITIONS if t.allows(status))


def is_allowed(source: Status | None, target: Status) -> bool:
    """Whether a task may move from ``source`` to ``target``.

    ``source`` is ``None`` for a task's creation, which may start in ``created``,
    ``queued`` or ``scheduled``.
    """
    if source is None:
        return target in INITIAL
    return target in allowed_targets(source)


INITIAL: Final = frozenset({Status.CREATED, Status.QUEUED, Status.SCHEDULED})


def initial_status(*, run: bool, run_after: datetime | None, now: datetime) -> Status:
    """The status a new task starts in."""
    if not run:
        return Status.CREATED
    if run_after is not None and run_after > now:
        return Status.SCHEDULED
    return Status.QUEUED


_RESET_RUN: Final[Mapping[str, Any]] = {
    "completed_at": None,
    "error": None,
    "result": None,
    "progress": 0,
    "current_step": None,
    "heartbeat_at": None,
    "cancel_requested_at": None,
    "worker": None,
}


class TransitionArgumentError(ValueError):
    """A transition was asked for without what it needs (a programming error)."""


def changes(
    transition: Transition,
    *,
    error: str | None = None,
    result: Any = None,
    run_after: datetime | None = None,
    worker: str | None = None,
) -> dict[str, Any]:
    """The columns ``transition`` writes, besides ``status``, ``updated_at`` and ``version``.

    Values may be the markers ``NOW`` and ``INCREMENT``, which the store resolves.
    Raises ``TransitionArgumentError`` when the transition lacks a required argument.
    """
    target = transition.target
    if target is Status.QUEUED:
        return {**_RESET_RUN, "queued_at": NOW, "run_after": None}
    if target is Status.SCHEDULED:
        if run_after is None:
            raise TransitionArgumentError(f"{transition.name!r} needs run_after")
        return {**_RESET_RUN, "run_after": run_after}
    if target is Status.RUNNING:
        return {
            "started_at": NOW,
            "heartbeat_at": NOW,
            "attempts": INCREMENT,
            "worker": worker,
            "completed_at": None,
            "error": None,
            "result": None,
        }
    if target in ERROR_STATUSES:
        if not error:
            raise TransitionArgumentError(f"{transition.name!r} needs an error message")
        return {"completed_at": NOW, "error": error, "result": result}
    if target is Status.COMPLETED:
        return {"completed_at": NOW, "error": None, "result": result, "progress": 100}
    if target is Status.CANCELLED:
        return {"completed_at": NOW, "error": None}
    if target is Status.CREATED:  # pragma: no cover - no transition enters created
        return {}
    raise AssertionError(f"unhandled target {target}")  # pragma: no cover


def retry_transition(*, force: bool) -> Transition:
    """The manual retry edge: ``force`` also allows retrying a completed task."""
    return FORCE_RETRY if force else RETRY
