"""The pure state machine: the table and the fields each transition writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasktrail.states import (
    ACTIVE,
    BACK_OFF,
    CANCEL,
    CLAIM,
    COMPLETE,
    FAIL,
    INCREMENT,
    NOW,
    PARTIAL_FAIL,
    RETRY,
    TERMINAL,
    TRANSITIONS,
    ItemStatus,
    Status,
    TransitionArgumentError,
    allowed_targets,
    changes,
    initial_status,
    is_allowed,
    retry_transition,
)


def test_statuses_and_item_statuses_are_the_contracts() -> None:
    assert [s.value for s in Status] == [
        "created", "queued", "scheduled", "running",
        "completed", "partial_failure", "failed", "cancelled",
    ]  # fmt: skip
    assert [s.value for s in ItemStatus] == ["pending", "running", "completed", "failed"]
    assert {Status.QUEUED, Status.SCHEDULED, Status.RUNNING} == ACTIVE
    assert ACTIVE.isdisjoint(TERMINAL)


def test_the_table_of_edges() -> None:
    edges = {(source, t.target) for t in TRANSITIONS for source in t.sources}
    assert edges == {
        (Status.CREATED, Status.QUEUED),
        (Status.CREATED, Status.SCHEDULED),
        (Status.CREATED, Status.CANCELLED),
        (Status.QUEUED, Status.RUNNING),
        (Status.QUEUED, Status.CANCELLED),
        (Status.SCHEDULED, Status.QUEUED),
        (Status.SCHEDULED, Status.CANCELLED),
        (Status.RUNNING, Status.COMPLETED),
        (Status.RUNNING, Status.PARTIAL_FAILURE),
        (Status.RUNNING, Status.FAILED),
        (Status.RUNNING, Status.CANCELLED),
        (Status.RUNNING, Status.SCHEDULED),
        (Status.RUNNING, Status.QUEUED),
        (Status.FAILED, Status.QUEUED),
        (Status.CANCELLED, Status.QUEUED),
        (Status.PARTIAL_FAILURE, Status.QUEUED),
        (Status.COMPLETED, Status.QUEUED),  # forced retry only
    }


def test_terminal_statuses_only_leave_through_a_retry() -> None:
    for status in TERMINAL:
        assert allowed_targets(status) <= {Status.QUEUED}
    assert not RETRY.allows(Status.COMPLETED)
    assert retry_transition(force=True).allows(Status.COMPLETED)
    assert not CANCEL.allows(Status.COMPLETED)


def test_creation_may_start_waiting_only() -> None:
    assert is_allowed(None, Status.QUEUED) and is_allowed(None, Status.CREATED)
    assert not is_allowed(None, Status.RUNNING)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert initial_status(run=False, run_after=None, now=now) is Status.CREATED
    assert initial_status(run=True, run_after=None, now=now) is Status.QUEUED
    later = datetime(2026, 1, 2, tzinfo=UTC)
    assert initial_status(run=True, run_after=later, now=now) is Status.SCHEDULED
    assert initial_status(run=True, run_after=now, now=later) is Status.QUEUED


def test_requeueing_clears_everything_a_previous_run_left() -> None:
    fields = changes(RETRY)
    for column in ("completed_at", "error", "result", "current_step", "cancel_requested_at"):
        assert fields[column] is None, column
    assert fields["progress"] == 0
    assert fields["queued_at"] is NOW


def test_running_starts_an_attempt() -> None:
    fields = changes(CLAIM, worker="w1")
    assert fields["attempts"] is INCREMENT
    assert fields["started_at"] is NOW and fields["heartbeat_at"] is NOW
    assert fields["worker"] == "w1"
    assert fields["completed_at"] is None and fields["error"] is None


def test_terminal_transitions_set_completed_at_and_error_exactly_when_failed() -> None:
    assert changes(COMPLETE, result=1) == {
        "completed_at": NOW, "error": None, "result": 1, "progress": 100,
    }  # fmt: skip
    assert changes(FAIL, error="boom")["error"] == "boom"
    assert changes(PARTIAL_FAIL, error="1 of 2")["completed_at"] is NOW
    assert changes(CANCEL) == {"completed_at": NOW, "error": None}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: changes(FAIL), "needs an error"),
        (lambda: changes(PARTIAL_FAIL, error=""), "needs an error"),
        (lambda: changes(BACK_OFF), "needs run_after"),
    ],
)
def test_transitions_refuse_missing_arguments(call: object, message: str) -> None:
    with pytest.raises(TransitionArgumentError, match=message):
        call()  # type: ignore[operator]
