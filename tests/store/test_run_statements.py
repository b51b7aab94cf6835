"""The run's writes — submit, claim, progress, end — on both databases: on PostgreSQL each is
one statement in autocommit mode, on SQLite a transaction of a few; both must store the
same rows, and both must refuse a run that no longer owns its task without writing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH, MAX_CACHED_STATEMENT_PARAMS
from sqlalchemy.engine.default import CACHE_HIT

from tasktrail import Link, RunSuperseded, Status, Submission, Trail
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


def test_a_claim_says_whether_another_task_it_could_take_was_queued(trail: Trail) -> None:
    _register(trail)
    trail.task("runs.other")(lambda ctx: None)
    trail.submit("runs.noop")
    trail.submit("runs.noop")
    trail.submit("runs.other")
    trail.submit("runs.noop", queue="elsewhere")
    queues, names = ["default"], ["runs.noop"]

    first = trail.store.claim_next(worker="w1", queues=queues, names=names)
    second = trail.store.claim_next(worker="w1", queues=queues, names=names)

    assert first is not None and first.more_queued
    assert second is not None and not second.more_queued  # the others are not for w1
    assert trail.store.claim_next(worker="w1", queues=queues, names=names) is None
    third = trail.store.claim_next(worker="w1", names=["runs.noop", "runs.other"])
    assert third is not None and third.task.name == "runs.other" and third.more_queued
    last = trail.store.claim_next(worker="w1")
    assert last is not None and last.task.queue == "elsewhere" and not last.more_queued


def test_complete_then_claim_ends_one_run_and_starts_the_next(trail: Trail) -> None:
    _register(trail)
    first = trail.submit("runs.noop", links=[Link("doc", "d1")])
    second = trail.submit("runs.noop", links=[Link("doc", "d1")])
    trail.store.claim(worker="w1")

    ended = trail.store.complete_then_claim(first.id, 1, {"n": 1}, worker="w1")

    assert ended is not None
    done, claimed = ended
    assert done.id == first.id and done.status is Status.COMPLETED and done.result == {"n": 1}
    assert done == trail.get(first.id).evolve(links=())
    assert claimed is not None and claimed.id == second.id
    assert claimed.status is Status.RUNNING and claimed.attempts == 1 and claimed.worker == "w1"
    assert claimed == trail.get(second.id).evolve(links=())
    assert _transitions(trail, first.id)[-1] == (
        Status.RUNNING, Status.COMPLETED, None, {"transition": "complete"}, "w1",
    )  # fmt: skip
    assert _transitions(trail, second.id)[-1] == (
        Status.QUEUED, Status.RUNNING, "attempt 1 of 3",
        {"transition": CLAIM.name, "attempt": 1}, "w1",
    )  # fmt: skip
    assert _active_links(trail, first.id) == {False}
    assert _active_links(trail, second.id) == {True}

    last = trail.store.complete_then_claim(second.id, 1, None, worker="w1")

    assert last is not None and last[1] is None  # nothing left to claim
    assert trail.get(second.id).status is Status.COMPLETED


def test_a_busy_thread_reads_nothing_to_end_one_run_and_claim_the_next(trail: Trail) -> None:
    _register(trail)
    first = trail.submit("runs.noop", links=[Link("doc", "d1")])
    trail.submit("runs.noop")
    trail.store.claim(worker="w1")
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement.split()[0].upper())

    sa.event.listen(trail.engine, "before_cursor_execute", record)
    try:
        ended = trail.store.complete_then_claim(first.id, 1, None, worker="w1")
    finally:
        sa.event.remove(trail.engine, "before_cursor_execute", record)

    assert ended is not None and ended[1] is not None
    if trail.engine.dialect.name == "postgresql":
        assert sent == ["WITH"]  # one statement: both ends, both events, the links
    else:
        # The guarded end (no locking read, no separate look at the items), the links,
        # its event; the claim and its event. BEGIN IMMEDIATE is sent by the driver.
        assert sent == ["UPDATE", "UPDATE", "INSERT", "UPDATE", "INSERT"]


def test_complete_then_claim_takes_only_the_queues_and_names_asked_for(trail: Trail) -> None:
    _register(trail)
    trail.task("runs.other")(lambda ctx: None)
    running = trail.submit("runs.noop")
    elsewhere = trail.submit("runs.noop", queue="elsewhere")
    other_name = trail.submit("runs.other")
    wanted = trail.submit("runs.noop", queue="mine")
    trail.store.claim(worker="w1", queues=["default"], names=["runs.noop"])

    ended = trail.store.complete_then_claim(
        running.id, 1, None, worker="w1", queues=["mine", "default"], names=["runs.noop"]
    )

    assert ended is not None and ended[1] is not None and ended[1].id == wanted.id
    assert trail.get(elsewhere.id).status is Status.QUEUED
    assert trail.get(other_name.id).status is Status.QUEUED


def test_a_run_s_writes_are_built_once_and_compiled_once(trail: Trail) -> None:
    """Every statement of a submit (with links and without), a claim, a progress report and
    an end is the same object at each call and comes from SQLAlchemy's compiled cache:
    building one per call cost more CPU than the database spent running it (a SQLite
    submit: 0.76 → 0.41 ms). A ``dedupe_key``'s ``ON CONFLICT`` cannot be cached by
    SQLAlchemy 2.0, so it is left out."""
    _register(trail)
    built: list[object] = []
    hits: set[object] = set()

    def given(_conn: object, statement: object, *_: object) -> None:
        built.append(statement)

    def compiled(*args: Any) -> None:
        hits.add(args[4].cache_hit)  # the execution context

    def one_run(number: int) -> list[object]:
        built.clear()
        task = trail.submit("runs.noop", links=[Link("doc", f"d{number}"), Link("user", "u1")])
        trail.submit("runs.noop", description=f"number {number}")
        claimed = trail.store.claim(worker="w1")
        assert claimed is not None and claimed.id == task.id
        trail.store.record_progress(task.id, 1, 50, f"step {number}", actor="w1")
        ended = trail.store.complete_then_claim(task.id, 1, {"n": number}, worker="w1")
        assert ended is not None and ended[1] is not None
        assert trail.store.complete_run(ended[1].id, 1, None, actor="w1") is not None
        return list(built)

    sa.event.listen(trail.engine, "before_execute", given)
    sa.event.listen(trail.engine, "after_cursor_execute", compiled)
    try:
        one_run(0)  # compiles each statement once
        hits.clear()
        second, third = one_run(1), one_run(2)
    finally:
        sa.event.remove(trail.engine, "before_execute", given)
        sa.event.remove(trail.engine, "after_cursor_execute", compiled)

    rebuilt = [str(a) for a, b in zip(second, third, strict=True) if a is not b]
    assert not rebuilt
    assert hits == {CACHE_HIT}


def test_every_write_of_a_run_is_short_enough_for_its_parse_to_be_cached(trail: Trail) -> None:
    """psycopg parses a statement's placeholders again on every call when its text is
    longer than ``MAX_CACHED_STATEMENT_LENGTH`` or it has more than
    ``MAX_CACHED_STATEMENT_PARAMS`` parameters: 170 µs per call for the fused end and
    claim, once it had grown past the length."""
    _register(trail)
    trail.task("runs.other")(lambda ctx: None)
    sent: list[tuple[str, int]] = []

    def record(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        sent.append((statement, len(params) if isinstance(params, dict) else 0))

    sa.event.listen(trail.engine, "before_cursor_execute", record)
    try:
        queues, names = ["mine", "default"], ["runs.noop", "runs.other"]
        first = trail.submit("runs.noop", dedupe_key="k", links=[Link("doc", "d1")],
                             description="every column set")  # fmt: skip
        trail.submit("runs.noop", links=[Link("doc", "d1"), Link("user", "u1")])
        trail.submit("runs.noop")
        claimed = trail.store.claim(worker="w1", queues=queues, names=names)
        assert claimed is not None and claimed.id == first.id
        trail.store.record_progress(first.id, 1, 50, "half", actor="w1")
        ended = trail.store.complete_then_claim(
            first.id, 1, {"n": 1}, worker="w1", queues=queues, names=names
        )
        assert ended is not None and ended[1] is not None
        trail.store.transition(ended[1].id, BACK_OFF, attempt=1, actor="w1",
                               run_after=utcnow(), message="boom")  # fmt: skip
        third = trail.store.claim(worker="w1", queues=queues, names=names)
        assert third is not None
        trail.store.transition(third.id, FAIL, attempt=1, actor="w1", error="boom")
    finally:
        sa.event.remove(trail.engine, "before_cursor_execute", record)

    if trail.engine.dialect.name != "postgresql":
        pytest.skip("psycopg's parse cache: PostgreSQL only")
    longest = max(sent, key=lambda s: len(s[0].encode()))[0]
    assert len(longest.encode()) <= MAX_CACHED_STATEMENT_LENGTH, longest
    assert max(count for _, count in sent) <= MAX_CACHED_STATEMENT_PARAMS
    assert any("UNION ALL" in statement for statement, _ in sent)  # the fused one was sent


def test_a_batch_takes_the_same_few_statements_whatever_its_size(trail: Trail) -> None:
    """``submit_many`` sends a statement per table on SQLite and one on PostgreSQL (and a
    ``NOTIFY``), not one per task. On PostgreSQL each column travels as an array, so the
    text is the same for every batch and within psycopg's parse cache: a multi-row
    ``VALUES`` was parsed again at every batch, 155 µs a task. A batch of 2,500 fits every
    database's limit on parameters."""
    _register(trail)
    sent: list[tuple[str, int]] = []

    def record(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        sent.append((statement, len(params) if isinstance(params, dict) else 0))

    batches: dict[int, list[tuple[str, int]]] = {}
    sa.event.listen(trail.engine, "before_cursor_execute", record)
    try:
        for size in (2, 300, 2500):
            sent.clear()
            given = [Submission("runs.noop", links=[Link("doc", f"d{n}"), Link("user", "u1")])
                     for n in range(size)]  # fmt: skip
            records = trail.submit_many(given)
            assert [r.links[0].resource_id for r in records] == [f"d{n}" for n in range(size)]
            batches[size] = list(sent)
    finally:
        sa.event.remove(trail.engine, "before_cursor_execute", record)

    assert len(trail.tasks_for("user", "u1", limit=5000)) == 2802
    assert len(batches[2]) == len(batches[300]) <= 3
    if trail.engine.dialect.name == "postgresql":
        assert [text for text, _ in batches[2]] == [text for text, _ in batches[2500]]
        for text, count in batches[2500]:
            assert len(text.encode()) <= MAX_CACHED_STATEMENT_LENGTH, text
            assert count <= MAX_CACHED_STATEMENT_PARAMS


def test_complete_then_claim_writes_nothing_when_an_item_failed(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("runs.noop")
    waiting = trail.submit("runs.noop")
    trail.store.claim(worker="w1")
    trail.store.prepare_items(task.id, ["a"])
    trail.store.set_item(task.id, "a", ItemStatus.FAILED, attempt=1, error="boom")
    events_before = len(trail.events(task.id))

    assert trail.store.complete_then_claim(task.id, 1, None, worker="w1") is None

    assert trail.get(task.id).status is Status.RUNNING
    assert len(trail.events(task.id)) == events_before
    assert trail.get(waiting.id).status is Status.QUEUED


def test_complete_then_claim_of_a_superseded_run_claims_nothing(trail: Trail) -> None:
    _register(trail)
    task = trail.submit("runs.noop")
    trail.store.claim(worker="w1")
    trail.store.transition(task.id, FAIL, attempt=1, actor="w1", error="x", message="x")
    trail.retry(task.id)
    trail.store.claim(worker="w2")  # attempt 2 owns it now
    waiting = trail.submit("runs.noop")

    with pytest.raises(RunSuperseded, match=r"run 1 .* no longer owns it"):
        trail.store.complete_then_claim(task.id, 1, "late", worker="w1")

    assert trail.get(task.id).status is Status.RUNNING and trail.get(task.id).attempts == 2
    assert trail.get(waiting.id).status is Status.QUEUED


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

    trail.submit_many([Submission("runs.noop"), Submission("runs.noop", dedupe_key="k")])
    assert len(heard) == 5  # a batch is one commit
