"""``tasktrail watch`` and the ``tasktrail tasks`` commands, through the real CLI parser."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasktrail import InvalidTransition, Status, TaskContext, Trail, Worker
from tasktrail.cli import app


@pytest.fixture
def cli(trail: Trail, database_url: str) -> CliRunner:
    """A runner whose commands open ``trail``'s database."""

    @trail.task("cli.ok")
    def ok(ctx: TaskContext) -> dict[str, bool]:
        for item in ctx.items(["a", "b", "c"]):
            with item:
                ctx.progress(50, f"item {item.key}")
        return {"ok": True}

    @trail.task("cli.partly")
    def partly(ctx: TaskContext) -> None:
        for item in ctx.items(["a", "b"]):
            with item:
                if item.key == "b":
                    raise RuntimeError("b broke")

    @trail.task("cli.broken")
    def broken(ctx: TaskContext) -> None:
        raise ValueError("nope")

    @trail.task("cli.slow")
    def slow(ctx: TaskContext) -> None:
        for n in range(5):
            ctx.progress(n * 20, f"step {n}")
            time.sleep(0.1)

    return CliRunner(env={"TASKTRAIL_DATABASE_URL": database_url, "COLUMNS": "200"})


@pytest.mark.parametrize(
    ("name", "status", "exit_code"),
    [
        ("cli.ok", "completed", 0),
        ("cli.partly", "partial_failure", 1),
        ("cli.broken", "failed", 1),
    ],
)
def test_watch_exits_with_how_the_task_ended(
    trail: Trail, cli: CliRunner, name: str, status: str, exit_code: int
) -> None:
    task = trail.submit(name)
    trail.run_pending()

    result = cli.invoke(app, ["watch", task.id])

    assert result.exit_code == exit_code, result.output
    assert f"{task.id} ended {status}" in result.output


def test_watch_follows_a_running_task_to_its_end(trail: Trail, cli: CliRunner) -> None:
    task = trail.submit("cli.slow")
    with Worker(trail, heartbeat_interval=0.5, heartbeat_timeout=5):
        result = cli.invoke(app, ["watch", task.id, "--interval", "0.05"])

    assert result.exit_code == 0, result.output
    assert trail.get(task.id).status is Status.COMPLETED
    assert f"{task.id} ended completed" in result.output
    assert "step 4" in result.output  # the task's current step, as the bar showed it


def test_watch_shows_item_counts_and_a_cancelled_task_fails(trail: Trail, cli: CliRunner) -> None:
    done = trail.submit("cli.ok")
    trail.run_pending()
    cancelled = trail.submit("cli.ok", run=False)
    trail.cancel(cancelled.id)

    shown = cli.invoke(app, ["watch", done.id])
    refused = cli.invoke(app, ["watch", cancelled.id])

    assert "items 3/3 done" in shown.output
    assert "item c" in shown.output  # the current step
    assert refused.exit_code == 1
    assert f"{cancelled.id} ended cancelled" in refused.output


def test_tasks_commands_list_show_retry_and_cancel(trail: Trail, cli: CliRunner) -> None:
    failed = trail.submit("cli.broken")
    trail.run_pending()
    waiting = trail.submit("cli.ok", run=False)

    listed = cli.invoke(app, ["tasks", "list", "--status", "failed"])
    shown = cli.invoke(app, ["tasks", "show", failed.id])
    retried = cli.invoke(app, ["tasks", "retry", failed.id])
    cancelled = cli.invoke(app, ["tasks", "cancel", waiting.id, "--reason", "not needed"])
    refused = cli.invoke(app, ["tasks", "cancel", waiting.id])

    assert listed.exit_code == 0, listed.output
    assert failed.id in listed.output
    assert waiting.id not in listed.output
    assert shown.exit_code == 0, shown.output
    assert "ValueError: nope" in shown.output
    assert retried.exit_code == 0, retried.output
    assert f"{failed.id} is queued" in retried.output
    assert cancelled.exit_code == 0, cancelled.output
    assert f"{waiting.id}: cancelled" in cancelled.output
    assert isinstance(refused.exception, InvalidTransition)


def test_tasks_cancel_of_a_running_task_says_cancel_requested(trail: Trail, cli: CliRunner) -> None:
    release = threading.Event()

    @trail.task("cli.waits")
    def waits(ctx: TaskContext) -> None:
        ctx.progress(1, "waiting")
        release.wait(10)
        ctx.check_cancelled()

    task = trail.submit("cli.waits")
    with Worker(trail, heartbeat_interval=0.5, heartbeat_timeout=5) as worker:
        deadline = time.monotonic() + 10
        while trail.get(task.id).progress == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        result = cli.invoke(app, ["tasks", "cancel", task.id])
        release.set()
        while worker.running() and time.monotonic() < deadline:
            time.sleep(0.02)

    assert f"{task.id}: cancel requested" in result.output
    assert trail.get(task.id).status is Status.CANCELLED


def test_worker_refuses_to_start_without_task_functions(cli: CliRunner) -> None:
    result = cli.invoke(app, ["worker"])

    assert result.exit_code == 2
    assert "no task functions are registered" in result.output


def test_database_url_flag_overrides_the_environment(
    trail: Trail, cli: CliRunner, database_url: str, tmp_path: Path
) -> None:
    failed = trail.submit("cli.broken")
    trail.run_pending()
    waiting = trail.submit("cli.ok", run=False)
    # The environment names a database without these tasks: only the flag finds them.
    elsewhere = CliRunner(
        env={"TASKTRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/elsewhere.db", "COLUMNS": "200"}
    )
    flag = ["--database-url", database_url]

    listed = elsewhere.invoke(app, ["tasks", "list", *flag])
    shown = elsewhere.invoke(app, ["tasks", "show", failed.id, *flag])
    watched = elsewhere.invoke(app, ["watch", failed.id, *flag])
    retried = elsewhere.invoke(app, ["tasks", "retry", failed.id, *flag])
    cancelled = elsewhere.invoke(app, ["tasks", "cancel", waiting.id, *flag])
    unflagged = elsewhere.invoke(app, ["tasks", "show", failed.id])

    assert failed.id in listed.output, listed.output
    assert "ValueError: nope" in shown.output, shown.output
    assert watched.exit_code == 1 and f"{failed.id} ended failed" in watched.output
    assert f"{failed.id} is queued" in retried.output, retried.output
    assert f"{waiting.id}: cancelled" in cancelled.output, cancelled.output
    assert unflagged.exit_code != 0
