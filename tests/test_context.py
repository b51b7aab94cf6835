"""What a task function sees: progress, items, logs and cancellation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tasktrail import InvalidInput, ItemStatus, Status, TaskContext, Trail


def test_ten_thousand_progress_calls_write_few_rows_and_the_last_value_lands(
    trail: Trail,
) -> None:
    @trail.task("busy")
    def busy(ctx: TaskContext) -> None:
        for i in range(10_000):
            ctx.progress(i / 100, "crunching")
        ctx.progress(99.5, "crunching")

    task = trail.submit("busy")
    trail.run_pending()

    progress_events = [e for e in trail.events(task.id) if e.type == "progress"]
    assert 1 <= len(progress_events) < 100
    assert progress_events[-1].progress == 99.5
    done = trail.get(task.id)
    assert done.status is Status.COMPLETED and done.progress == 100


def test_with_interval_zero_every_step_is_stored_and_flushing_nothing_costs_nothing(
    trail: Trail,
) -> None:
    transactions_in_flush: list[int] = []

    @trail.task("every.step", progress_interval=0)
    def every_step(ctx: TaskContext) -> None:
        for step, percent in (("one", 33.0), ("two", 66.0), ("three", 100.0)):
            ctx.progress(percent, step)
        begun: list[sa.Connection] = []
        count = begun.append  # one object, so that it can be removed again
        sa.event.listen(trail.engine, "begin", count)
        try:
            ctx.flush()  # nothing pending: no transaction, no cancel check
        finally:
            sa.event.remove(trail.engine, "begin", count)
        transactions_in_flush.append(len(begun))

    task = trail.submit("every.step")
    trail.run_pending()

    steps = [e.step for e in trail.events(task.id) if e.type == "progress"]
    assert steps == ["one", "two", "three"]
    assert transactions_in_flush == [0]


def test_ten_thousand_reports_with_new_steps_write_a_handful_and_the_last_lands(
    trail: Trail,
) -> None:
    @trail.task("busy.steps")
    def busy(ctx: TaskContext) -> None:
        for i in range(10_000):
            ctx.progress(i / 100, f"step {i}")

    task = trail.submit("busy.steps")
    trail.run_pending()

    written = [(e.progress, e.step) for e in trail.events(task.id) if e.type == "progress"]
    assert 2 <= len(written) < 100
    assert written[0] == (0, "step 0")  # the first report at once
    assert written[-1] == (99.99, "step 9999")  # the last one always lands
    done = trail.get(task.id)
    assert done.status is Status.COMPLETED and done.current_step == "step 9999"


def test_the_first_report_is_written_at_once(trail: Trail) -> None:
    seen: list[tuple[float, str | None]] = []

    @trail.task("first")
    def first(ctx: TaskContext) -> None:
        ctx.progress(5, "starting")
        current = trail.get(ctx.task_id)  # read while the run goes on
        seen.append((current.progress, current.current_step))

    trail.submit("first")
    trail.run_pending()
    assert seen == [(5, "starting")]


def test_a_progress_interval_of_zero_writes_every_report(trail: Trail) -> None:
    @trail.task("steps", progress_interval=0)
    def steps(ctx: TaskContext) -> None:
        for n, step in enumerate(("fetch", "parse", "store"), start=1):
            ctx.progress(n * 30, step)

    task = trail.submit("steps")
    trail.run_pending()
    written = [(e.progress, e.step) for e in trail.events(task.id) if e.type == "progress"]
    assert written == [(30, "fetch"), (60, "parse"), (90, "store")]


def test_items_some_failed_ends_partial_failure_then_retry_only_failed(trail: Trail) -> None:
    attempts: list[tuple[int, str]] = []

    @trail.task("concepts")
    def concepts(ctx: TaskContext) -> str:
        for item in ctx.items(["c1", "c2", "c3"]):
            with item:
                attempts.append((ctx.attempt, item.key))
                if item.key == "c2" and ctx.attempt == 1:
                    raise ValueError("no tutorial for c2")
        return "done"

    task = trail.submit("concepts")
    trail.run_pending()
    partial = trail.get(task.id)
    assert partial.status is Status.PARTIAL_FAILURE
    assert partial.error == "1 of 3 items failed: c2"
    assert partial.result == "done"
    counts = trail.item_counts(task.id)
    assert (counts.total, counts.completed, counts.failed) == (3, 2, 1)
    assert trail.items(task.id)[1].error == "ValueError: no tutorial for c2"

    trail.retry(task.id, only_failed_items=True)
    trail.run_pending()

    assert trail.get(task.id).status is Status.COMPLETED
    assert attempts == [(1, "c1"), (1, "c2"), (1, "c3"), (2, "c2")]
    assert {i.status for i in trail.items(task.id)} == {ItemStatus.COMPLETED}


def test_retry_of_all_items_redoes_every_item(trail: Trail) -> None:
    seen: list[str] = []

    @trail.task("concepts")
    def concepts(ctx: TaskContext) -> None:
        for item in ctx.items(["a", "b"]):
            with item:
                seen.append(item.key)
                if item.key == "a" and ctx.attempt == 1:
                    raise ValueError("a")

    task = trail.submit("concepts")
    trail.run_pending()
    trail.retry(task.id)
    trail.run_pending()
    assert seen == ["a", "b", "a", "b"]


def test_all_items_failed_ends_failed(trail: Trail) -> None:
    @trail.task("concepts")
    def concepts(ctx: TaskContext) -> None:
        for item in ctx.items(["a", "b"]):
            with item:
                raise RuntimeError(item.key)

    task = trail.submit("concepts")
    trail.run_pending()
    failed = trail.get(task.id)
    assert failed.status is Status.FAILED
    assert failed.error == "RuntimeError: all 2 items failed: a, b"


def test_log_lines_are_events(trail: Trail) -> None:
    @trail.task("chatty")
    def chatty(ctx: TaskContext) -> None:
        ctx.log("info", "made outline", {"sections": 4})

    task = trail.submit("chatty")
    trail.run_pending()
    [log] = [e for e in trail.events(task.id) if e.type == "log"]
    assert (log.message, log.data) == ("made outline", {"level": "info", "data": {"sections": 4}})


@pytest.mark.parametrize("bad", [-1, 100.5, float("nan"), "50", True, None])
def test_progress_outside_0_to_100_is_refused_and_fails_the_run(trail: Trail, bad: object) -> None:
    @trail.task("bad.progress")
    def bad_progress(ctx: TaskContext) -> None:
        ctx.progress(bad)  # type: ignore[arg-type]

    task = trail.submit("bad.progress")
    trail.run_pending()
    failed = trail.get(task.id)
    assert failed.status is Status.FAILED
    assert failed.error is not None and "progress must be a number from 0 to 100" in failed.error
    assert not [e for e in trail.events(task.id) if e.type == "progress"]


def test_bad_log_and_item_input_is_refused_with_a_clear_error(trail: Trail) -> None:
    errors: list[str] = []
    deep: list[object] = []
    for _ in range(5_000):  # deeper than json.dumps can recurse
        deep = [deep]

    @trail.task("careless")
    def careless(ctx: TaskContext) -> None:
        for call in (
            lambda: ctx.log("loud", "x"),
            lambda: ctx.log("info", "x", {"when": object()}),
            lambda: ctx.log("info", "x", deep),
            lambda: list(ctx.items(["a", "a"])),
            lambda: list(ctx.items(["", "b"])),
        ):
            with pytest.raises(InvalidInput) as refused:
                call()
            errors.append(str(refused.value))

    task = trail.submit("careless")
    trail.run_pending()
    assert trail.get(task.id).status is Status.COMPLETED
    assert errors[0].startswith("log level must be one of")
    assert "JSON-serialisable" in errors[1]
    assert "levels deep" in errors[2]
    assert "given twice" in errors[3]
    assert "non-empty" in errors[4]
    assert trail.items(task.id) == []
    assert [e.type for e in trail.events(task.id)] == ["transition"] * 3


def test_a_result_that_is_not_json_fails_the_task_without_retrying(trail: Trail) -> None:
    @trail.task("returns.object", max_attempts=3)
    def returns_object(ctx: TaskContext) -> object:
        return object()

    task = trail.submit("returns.object")
    trail.run_pending()
    failed = trail.get(task.id)
    assert failed.status is Status.FAILED and failed.attempts == 1
    assert failed.error is not None and "JSON-serialisable" in failed.error


def test_an_error_message_with_a_nul_character_is_still_recorded(trail: Trail) -> None:
    @trail.task("nul.error")
    def nul_error(ctx: TaskContext) -> None:
        raise ValueError("bad byte \x00 here")

    task = trail.submit("nul.error")
    trail.run_pending()
    failed = trail.get(task.id)
    assert failed.status is Status.FAILED
    assert failed.error == "ValueError: bad byte \\x00 here"


def test_a_step_with_a_nul_character_is_refused(trail: Trail) -> None:
    @trail.task("nul.step")
    def nul_step(ctx: TaskContext) -> None:
        ctx.progress(10, "step\x00")

    task = trail.submit("nul.step")
    trail.run_pending()
    failed = trail.get(task.id)
    assert failed.error is not None and "step must not contain NUL" in failed.error
