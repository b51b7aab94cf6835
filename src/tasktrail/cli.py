"""The ``tasktrail`` command line (Typer + Rich)."""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from tasktrail.errors import TasktrailError
from tasktrail.records import ItemCounts, TaskRecord
from tasktrail.states import Status
from tasktrail.store import create_engine
from tasktrail.store import migrate as migrations
from tasktrail.trail import DEFAULT_DATABASE_URL, Trail

app = typer.Typer(help="Durable, linked, observable background tasks.", no_args_is_help=True)
db_app = typer.Typer(help="Manage tasktrail's tables.", no_args_is_help=True)
tasks_app = typer.Typer(help="Inspect and steer tasks.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tasks_app, name="tasks")
console = Console()

AppOption = Annotated[
    str | None,
    typer.Option("--app", envvar="TASKTRAIL_APP", help="MODULE:ATTR of your Trail."),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="TASKTRAIL_DATABASE_URL", help="SQLAlchemy URL."),
]


def load_trail(spec: str | None, database_url: str | None = None) -> Trail:
    """The ``Trail`` named by ``MODULE:ATTR``, or a plain one on the configured database."""
    if spec is None:
        return Trail(database_url)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"--app must look like MODULE:ATTR, got {spec!r}")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot load {spec!r}: {exc}") from None
    if not isinstance(found, Trail):
        raise typer.BadParameter(f"{spec!r} is a {type(found).__name__}, not a Trail")
    return found


@contextmanager
def opened_trail(spec: str | None, database_url: str | None = None) -> Iterator[Trail]:
    """``load_trail``, with its database connections released when the block ends."""
    trail = load_trail(spec, database_url)
    try:
        yield trail
    finally:
        trail.close()


def _engine(database_url: str | None) -> Any:
    return create_engine(database_url or DEFAULT_DATABASE_URL)


# -- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head"), database_url: DatabaseOption = None) -> None:
    """Create or migrate tasktrail's tables up to REVISION (default: the newest)."""
    migrations.upgrade(_engine(database_url), revision)
    console.print(f"tasktrail schema at {migrations.current_revision(_engine(database_url))}")


@db_app.command("downgrade")
def db_downgrade(revision: str, database_url: DatabaseOption = None) -> None:
    """Migrate tasktrail's tables down to REVISION (`base` drops them all)."""
    migrations.downgrade(_engine(database_url), revision)
    console.print(f"tasktrail schema at {migrations.current_revision(_engine(database_url))}")


@db_app.command("current")
def db_current(database_url: DatabaseOption = None) -> None:
    """Print the schema revision the database is at."""
    current = migrations.current_revision(_engine(database_url))
    head = migrations.head_revision()
    state = "up to date" if current == head else f"behind; newest is {head}"
    console.print(f"{current or 'none'} ({state})")


# -- tasks ----------------------------------------------------------------------------------


def _status_style(status: str) -> str:
    return {
        "completed": "green",
        "failed": "red",
        "partial_failure": "yellow",
        "cancelled": "magenta",
        "running": "cyan",
    }.get(status, "white")


def _task_table(records: list[TaskRecord]) -> Table:
    table = Table("id", "name", "status", "progress", "attempts", "step", "error")
    for r in records:
        table.add_row(
            r.id,
            r.name,
            f"[{_status_style(r.status)}]{r.status}[/]",
            f"{r.progress:.0f}%",
            f"{r.attempts}/{r.max_attempts}",
            r.current_step or "",
            (r.error or "")[:60],
        )
    return table


@tasks_app.command("list")
def tasks_list(
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses.")] = None,
    name: Annotated[str | None, typer.Option(help="Only tasks of this name.")] = None,
    limit: int = 20,
    app_spec: AppOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """List the newest tasks."""
    with opened_trail(app_spec, database_url) as trail:
        page = trail.list_tasks(status=status, name=name, limit=limit)
    console.print(_task_table(list(page.items)))


@tasks_app.command("show")
def tasks_show(
    task_id: str, app_spec: AppOption = None, database_url: DatabaseOption = None
) -> None:
    """Show one task, its links, items and history."""
    with opened_trail(app_spec, database_url) as trail:
        _show(trail, task_id)


def _show(trail: Trail, task_id: str) -> None:
    task = trail.get(task_id)
    console.print(_task_table([task]))
    for link in task.links:
        console.print(f"linked to {link.resource_type}/{link.resource_id} ({link.role or '-'})")
    if task.result is not None:
        console.print_json(json.dumps(task.result))
    history = Table("#", "at", "type", "change", "progress", "message")
    for e in trail.events(task_id):
        change = f"{e.from_status or '∅'} → {e.to_status}" if e.to_status else ""
        history.add_row(
            str(e.id),
            e.created_at.strftime("%H:%M:%S.%f")[:-3],
            e.type,
            change,
            "" if e.progress is None else f"{e.progress:.0f}%",
            (e.message or "")[:70],
        )
    console.print(history)


@tasks_app.command("retry")
def tasks_retry(
    task_id: str,
    only_failed_items: bool = typer.Option(False, help="Keep completed items done."),
    force: bool = typer.Option(False, help="Also rerun a completed task."),
    app_spec: AppOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Queue a failed, cancelled or partially failed task again."""
    with opened_trail(app_spec, database_url) as trail:
        task = trail.retry(task_id, only_failed_items=only_failed_items, force=force, actor="cli")
    console.print(f"{task.id} is {task.status}")


@tasks_app.command("cancel")
def tasks_cancel(
    task_id: str,
    reason: str | None = None,
    app_spec: AppOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Cancel a task (a running one is asked to stop)."""
    with opened_trail(app_spec, database_url) as trail:
        task = trail.cancel(task_id, reason=reason, actor="cli")
    state = (
        "cancel requested" if task.cancel_requested_at and task.status == "running" else task.status
    )
    console.print(f"{task.id}: {state}")


# -- worker and watch ------------------------------------------------------------------------


@app.command("worker")
def worker(
    app_spec: AppOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks run at once.")] = 4,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues to take tasks from (default: all).")
    ] = None,
    heartbeat_interval: Annotated[
        float | None,
        typer.Option(envvar="TASKTRAIL_HEARTBEAT_INTERVAL", help="Seconds between heartbeats."),
    ] = None,
    heartbeat_timeout: Annotated[
        float | None,
        typer.Option(
            envvar="TASKTRAIL_HEARTBEAT_TIMEOUT",
            help="Seconds without a heartbeat after which a run counts as lost.",
        ),
    ] = None,
    shutdown_timeout: Annotated[
        float, typer.Option(help="Seconds to let running tasks finish on SIGTERM/SIGINT.")
    ] = 30.0,
    cancel_grace: Annotated[
        float, typer.Option(help="Seconds a running task has to acknowledge a cancel.")
    ] = 10.0,
    database_url: DatabaseOption = None,
) -> None:
    """Run tasks until SIGTERM or Ctrl-C (a second one exits at once)."""
    from tasktrail.worker import Worker

    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    with opened_trail(app_spec, database_url) as trail:
        if not trail.registry.names():
            raise typer.BadParameter(
                "no task functions are registered: pass --app MODULE:ATTR (or TASKTRAIL_APP)"
            )
        runner = Worker(
            trail,
            concurrency=concurrency,
            queues=names,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            shutdown_timeout=shutdown_timeout,
            cancel_grace=cancel_grace,
        )
        console.print(
            f"worker {runner.name} on {trail.engine.url.render_as_string(hide_password=True)}: "
            f"concurrency {concurrency}, queues {', '.join(names) if names else 'all'}, "
            f"tasks {', '.join(trail.registry.names()) or 'none registered'}"
        )
        runner.run()
    console.print(f"worker {runner.name} stopped")


def _watch_detail(task: TaskRecord, counts: ItemCounts) -> str:
    parts = [f"[{_status_style(task.status)}]{task.status}[/]"]
    if task.current_step:
        parts.append(task.current_step)
    if counts.total:
        parts.append(
            f"items {counts.completed}/{counts.total} done"
            + (f", {counts.failed} failed" if counts.failed else "")
            + (f", {counts.running} running" if counts.running else "")
        )
    if task.attempts > 1:
        parts.append(f"attempt {task.attempts}/{task.max_attempts}")
    return " · ".join(parts)


@app.command("watch")
def watch(
    task_id: str,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between looks.")] = 0.5,
    app_spec: AppOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show a live progress bar for a task until it ends. Exits 0 if it completed, 1 if it
    ended failed, partially failed or cancelled."""
    with opened_trail(app_spec, database_url) as trail:
        task = _watch(trail, task_id, interval)
    ended = f"{task.id} ended [{_status_style(task.status)}]{task.status}[/]"
    console.print(ended + (f": {task.error}" if task.error else ""))
    if task.status is not Status.COMPLETED:
        raise typer.Exit(1)


def _watch(trail: Trail, task_id: str, interval: float) -> TaskRecord:
    task = trail.get(task_id)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console) as bar:
        row = bar.add_task(f"{task.name} {task.id}", total=100, detail="")
        while True:
            task = trail.get(task_id)
            detail = _watch_detail(task, trail.item_counts(task_id))
            bar.update(row, completed=task.progress, detail=detail)
            if task.status.is_terminal:
                return task
            time.sleep(interval)


# -- serve and demo -------------------------------------------------------------------------

HostOption = Annotated[str, typer.Option(help="Interface to bind (non-loopback needs a token).")]
PortOption = Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")]
ConcurrencyOption = Annotated[
    int, typer.Option(min=1, help="Tasks the embedded worker runs at once.")
]
InsecureOption = Annotated[
    bool,
    typer.Option(help="Serve a non-loopback host without TASKTRAIL_API_TOKEN (not advised)."),
]


def _announce(url: str) -> None:
    console.print(
        f"tasktrail serving {url}  (API {url}/api/v1, docs {url}/docs)",
        soft_wrap=True,
        highlight=False,
    )


def _refuse_exposure_early(host: str, *, insecure: bool) -> None:
    # Before the database is opened: a refused command must leave nothing behind.
    from tasktrail.api.security import configured_token
    from tasktrail.serve import check_exposure

    check_exposure(host, configured_token(None), insecure=insecure)


@app.command("serve")
def serve(
    app_spec: AppOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    concurrency: ConcurrencyOption = 4,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run tasks elsewhere.")
    ] = False,
    insecure: InsecureOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Serve the HTTP API with an embedded worker, until SIGTERM or Ctrl-C."""
    from tasktrail.serve import serve as run_server

    _refuse_exposure_early(host, insecure=insecure)
    with opened_trail(app_spec, database_url) as trail:
        run_server(
            trail,
            host=host,
            port=port,
            concurrency=concurrency,
            worker=not no_worker,
            insecure=insecure,
            on_ready=_announce,
        )


@app.command("demo")
def demo(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    concurrency: ConcurrencyOption = 4,
    insecure: InsecureOption = False,
) -> None:
    """Serve the built-in roadmap demo (seed 000) with sample tasks, until Ctrl-C."""
    from tasktrail.demo import default_app
    from tasktrail.serve import serve as run_server

    _refuse_exposure_early(host, insecure=insecure)
    roadmaps = default_app()
    trail = roadmaps.trail
    console.print(f"database: {trail.engine.url.render_as_string(hide_password=True)}")
    ids = roadmaps.submit_samples()

    def ready(url: str) -> None:
        _announce(url)
        hints = [
            f"sample roadmap tasks: {', '.join(ids)}",
            f"  watch one:     curl -N '{url}/api/v1/events?task_id={ids[0]}'",
            f"  status check:  curl '{url}/api/v1/resources/roadmap/roadmap-1/status-check'",
            f"  retry content: curl -X POST "
            f"'{url}/roadmaps/roadmap-1/concepts/python-basics-1/tutorial/retry'",
        ]
        for line in hints:
            console.print(line, soft_wrap=True, highlight=False)

    try:
        run_server(
            trail,
            host=host,
            port=port,
            concurrency=concurrency,
            insecure=insecure,
            customize=roadmaps.mount,
            on_ready=ready,
        )
    finally:
        trail.close()


def main() -> None:
    """Entry point of the ``tasktrail`` script."""
    try:
        app()
    except TasktrailError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(1) from None


if os.environ.get("TASKTRAIL_LOG_LEVEL"):
    import logging

    logging.basicConfig(level=os.environ["TASKTRAIL_LOG_LEVEL"].upper())

if __name__ == "__main__":
    main()
