"""Random sequences of everything that can happen to tasks, checked after every step.

Invariants, for every task the sequence touched:
- its status moved only along an edge the transition table allows;
- ``completed_at`` is set exactly in terminal statuses;
- ``error`` is set exactly in failed and partially failed statuses;
- its status equals the ``to_status`` of its latest transition event;
- a call succeeded exactly when the table allowed it (no silent no-ops, no wrong refusals).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tasktrail import InvalidTransition, Link, RunSuperseded, Status, TaskContext, Trail
from tasktrail.states import (
    BACK_OFF,
    CANCEL,
    COMPLETE,
    ERROR_STATUSES,
    FAIL,
    TERMINAL,
    is_allowed,
    retry_transition,
)

Refused = (InvalidTransition, RunSuperseded)


class TaskLifecycles(RuleBasedStateMachine):
    trail: Trail  # set by the test, one per backend

    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.queue = f"q-{uuid.uuid4().hex[:8]}"  # keeps examples apart in one database
        self.last_seen: dict[str, Status] = {}
        self.store = self.trail.store

    def _current(self, task_id: str) -> Status:
        return self.store.get(task_id).status

    def _expect(self, task_id: str, allowed: bool, call: object) -> None:
        try:
            call()  # type: ignore[operator]
        except Refused:
            assert not allowed, f"refused although allowed from {self.last_seen[task_id]}"
        else:
            assert allowed, f"accepted although not allowed from {self.last_seen[task_id]}"

    @rule(target=tasks, run=st.booleans())
    def submit(self, run: bool) -> str:
        task = self.trail.submit(
            "prop.noop", run=run, queue=self.queue, links=[Link("lifecycle", self.queue)]
        )
        self.last_seen[task.id] = task.status
        return task.id

    @rule(task_id=tasks)
    def run(self, task_id: str) -> None:
        allowed = self._current(task_id) is Status.CREATED
        self._expect(task_id, allowed, lambda: self.trail.run(task_id))

    @rule()
    def claim(self) -> None:
        queued = [t for t, s in self.last_seen.items() if s is Status.QUEUED]
        claimed = self.store.claim(worker="prop", queues=[self.queue])
        assert (claimed is None) == (not queued)
        if claimed is not None:
            assert claimed.id in queued and claimed.status is Status.RUNNING

    @rule(task_id=tasks, percent=st.floats(0, 100))
    def progress(self, task_id: str, percent: float) -> None:
        record = self.store.get(task_id)
        allowed = record.status is Status.RUNNING
        self._expect(
            task_id,
            allowed,
            lambda: self.store.record_progress(task_id, record.attempts, percent, "step"),
        )

    @rule(task_id=tasks, outcome=st.sampled_from(["complete", "fail", "back_off", "ack_cancel"]))
    def finish_run(self, task_id: str, outcome: str) -> None:
        record = self.store.get(task_id)
        transition = {"complete": COMPLETE, "fail": FAIL, "back_off": BACK_OFF,
                      "ack_cancel": CANCEL}[outcome]  # fmt: skip
        allowed = record.status is Status.RUNNING
        self._expect(
            task_id,
            allowed,
            lambda: self.store.transition(
                task_id,
                transition,
                attempt=record.attempts,
                error="boom",
                result={"ok": True},
                run_after=self.store.clock() - timedelta(seconds=1),
            ),
        )

    @rule(task_id=tasks)
    def cancel(self, task_id: str) -> None:
        status = self._current(task_id)
        self._expect(task_id, CANCEL.allows(status), lambda: self.trail.cancel(task_id))

    @rule(task_id=tasks, force=st.booleans(), only_failed=st.booleans())
    def retry(self, task_id: str, force: bool, only_failed: bool) -> None:
        allowed = retry_transition(force=force).allows(self._current(task_id))
        self._expect(
            task_id,
            allowed,
            lambda: self.trail.retry(task_id, force=force, only_failed_items=only_failed),
        )

    @rule()
    def promote_due(self) -> None:
        self.store.promote_due()

    @invariant()
    def every_task_is_consistent(self) -> None:
        for task_id, previous in self.last_seen.items():
            record = self.store.get(task_id)
            status = record.status
            assert status == previous or is_allowed(previous, status), (previous, status)
            assert (record.completed_at is not None) == (status in TERMINAL), record
            assert (record.error is not None) == (status in ERROR_STATUSES), record
            transitions = [e for e in self.store.events(task_id=task_id) if e.to_status]
            assert transitions[-1].to_status == status
            for before, after in pairwise(transitions):
                assert before.to_status == after.from_status
                assert after.to_status is not None
                assert is_allowed(after.from_status, after.to_status)
            self.last_seen[task_id] = status
        # A resource's active tasks are read from its links: they must follow every change.
        active = {t.id for t in self.trail.tasks_for("lifecycle", self.queue, active=True)}
        assert active == {t for t, status in self.last_seen.items() if status.is_active}


@pytest.mark.slow
def test_random_lifecycles_keep_every_invariant(trail: Trail) -> None:
    @trail.task("prop.noop")
    def noop(ctx: TaskContext) -> None:
        return None

    TaskLifecycles.trail = trail
    run_state_machine_as_test(
        TaskLifecycles,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
