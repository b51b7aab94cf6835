"""The run's writes — submit, claim, progress, end — on both databases: on PostgreSQL each is
one statement in autocommit mode, on SQLite a transaction of a few; both must store the
same rows, and both must refuse a run that no longer owns its task without writing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tasktrail import Link, RunSuperseded, Status, Trail
from tasktrail.schema import links
from tasktrail.states import BACK_OFF, CLAIM, FAIL, ItemStatus
from tasktrail.store import utcnow


def _register(trail: Trail) -> None:
    @trail.task("runs.noop", max_attempts=3)
    def noop(ctx: object) -> None:
        return None


def _transitions(trail: Trail, task_id: str) -> list[tuple[object, ...]]:
    return [
        (e.from_status, e.to_status, e.message, e.data, e.actor)
        for e in trail.events(task_id)
        if e.type == "transition"
    ]


def _active_links(trail: Trail, task_id: str) -> set[bool]:
    with trail.engine.connect() as conn:
        return set(conn.execute(sa.select(links.c.active).where(links.c.task_id == task_id))
                   .scalars())  # fmt: skip


def test_submit_returns_the_links_as_stored(trail: Trail) -> None:
    _register(trail)
    given = [Link("user", "u1"), Link("doc", "d2", role="source"), Link("doc", "d1"),
             Link("doc", "d2", role="ignored: already linked")]  # fmt: skip

    task = trail.submit("runs.noop", links=given)

    assert task.links == trail.get(task.id).links
    assert [(link.resource_type, link.resource_id, link.role) for link in task.links] == [
        ("doc", "d1", None), ("doc", "d2", "source"), ("user", "u1", None)
    ]  # fmt: skip
    assert _active_links(trail, task.id) == {True}


def test_a_deduplicated_submit_writes_nothing(trail: Trail) -> None:
    _register(trail)
    first = trail.submit("runs.noop", dedupe_key="k", links=[Link("doc", "d1")])

    again = trail.submit("runs.noop", dedupe_key="k", links=[Link("doc", "d2")])

    assert again.id == first.id and again.deduplicated
    assert [link.resource_id for link in trail.get(first.id).links] == ["d1"]
    assert len(trail.events(first.id)) == 1


def test_claim_records_its_attempt(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("runs.noop", links=[Link("doc", "d1")])

    claimed = trail.store.claim(worker="w1")

    assert claimed is not None and claimed.id == task.id
    assert claimed.status is Status.RUNNING and claimed.attempts == 1
    assert claimed.worker == "w1" and claimed.started_at is not None
    assert _transitions(trail, task.id)[-1] == (
        Status.QUEUED, Status.RUNNING, "attempt 1 of 3",
        {"transition": CLAIM.name, "attempt": 1}, "w1",
    )  # fmt: skip
    assert trail.store.claim(worker="w1") is None


def test_complete_run_completes_and_deactivates_the_links(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("runs.noop", links=[Link("doc", "d1"), Link("user", "u1")])
    trail.store.claim(worker="w1")

    done = trail.store.complete_run(task.id, 1, {"rows": [1, 2]}, actor="w1")

    assert done is not None
    assert done.status is Status.COMPLETED and done.result == {"rows": [1, 2]}
    assert done == trail.get(task.id).evolve(links=())
    assert _transitions(trail, task.id)[-1] == (
        Status.RUNNING,
        Status.COMPLETED,
        None,
        {"transition": "complete"},
        "w1",
    )
    assert _active_links(trail, task.id) == {False}


def test_complete_run_leaves_a_task_with_failed_items_to_its_caller(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("runs.noop")
    trail.store.claim(worker="w1")
    trail.store.prepare_items(task.id, ["a", "b"])
    trail.store.set_item(task.id, "a", ItemStatus.FAILED, attempt=1, error="boom")
    events_before = len(trail.events(task.id))

    assert trail.store.complete_run(task.id, 1, None, actor="w1") is None

    assert trail.get(task.id).status is Status.RUNNING
    assert len(trail.events(task.id)) == events_before
    assert _active_links(trail, task.id) <= {True}


def test_a_superseded_run_cannot_end_the_task(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("runs.noop")
    trail.store.claim(worker="w1")
    trail.cancel(task.id)  # running: only asked
    trail.store.transition(task.id, FAIL, attempt=1, actor="w1", error="x", message="x")
    trail.retry(task.id)
    trail.store.claim(worker="w2")  # attempt 2 owns it now
    events_before = len(trail.events(task.id))

    with pytest.raises(RunSuperseded, match=r"run 1 .* no longer owns it"):
        trail.store.complete_run(task.id, 1, "late", actor="w1")
    with pytest.raises(RunSuperseded, match=r"run 1 .* no longer owns it"):
        trail.store.transition(
            task.id, BACK_OFF, attempt=1, actor="w1", run_after=utcnow(), message="late"
        )

    assert trail.get(task.id).status is Status.RUNNING and trail.get(task.id).attempts == 2
    assert len(trail.events(task.id)) == events_before


def test_ending_a_run_by_back_off_keeps_the_links_active(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("runs.noop", links=[Link("doc", "d1")])
    trail.store.claim(worker="w1")

    backed_off = trail.store.transition(
        task.id, BACK_OFF, attempt=1, actor="w1", run_after=utcnow(), message="again soon",
        data={"retry_in": 0.0},
    )  # fmt: skip

    assert backed_off.status is Status.SCHEDULED
    assert _transitions(trail, task.id)[-1] == (
        Status.RUNNING, Status.SCHEDULED, "again soon",
        {"transition": BACK_OFF.name, "retry_in": 0.0}, "w1",
    )  # fmt: skip
    assert _active_links(trail, task.id) == {True}


def test_event_listeners_hear_each_write(trail: Trail) -> None:
    _register(trail)
    heard: list[int] = []
    trail.store.on_events(lambda: heard.append(1))

    task = trail.submit("runs.noop")
    trail.store.claim(worker="w1")
    trail.store.record_progress(task.id, 1, 50.0, "half", actor="w1")
    trail.store.complete_run(task.id, 1, None, actor="w1")

    assert len(heard) == 4
