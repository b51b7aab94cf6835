"""``python -m benchmarks``: the embedded worker on SQLite and PostgreSQL, next to what each
database does on its own. Prints a table; never run by the test suite.

``BENCH_TASKS`` (default 1000) and ``BENCH_SAMPLES`` (default 100) size the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager

from rich.console import Console
from rich.table import Table

from benchmarks.databases import (
    committed_updates_per_second,
    postgres_database,
    sqlite_database,
)
from benchmarks.worker import bench_trail, clear, latency, throughput
from tasktrail import Trail

TASKS = int(os.environ.get("BENCH_TASKS", "1000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "100"))
BACKENDS: dict[str, Callable[[], AbstractContextManager[str]]] = {
    "sqlite": sqlite_database,
    "postgresql": postgres_database,
}


def measure(url: str) -> dict[str, float]:
    """Every number of one row of the table."""
    row = {"updates/s": committed_updates_per_second(url)}
    trail = bench_trail(url)
    other = Trail(url)
    other.registry = trail.registry
    try:
        for concurrency in (1, 4):
            clear(trail)
            row[f"tasks/s c={concurrency}"] = throughput(
                trail, tasks=TASKS, concurrency=concurrency
            )
        clear(trail)
        woken = latency(trail, trail, samples=SAMPLES)
        row["in-process p50"], row["in-process p95"] = woken.p50, woken.p95
        clear(trail)
        remote = latency(trail, other, samples=SAMPLES)
        row["other process p50"], row["other process p95"] = remote.p50, remote.p95
    finally:
        other.close()
        trail.close()
    return row


def celery_table(console: Console) -> None:
    """Celery alone against Celery through tasktrail (needs Redis and PostgreSQL)."""
    from benchmarks import celery

    figures: dict[str, float] = {}
    with postgres_database() as results_db, postgres_database() as tracked_db:
        backend = "db+" + results_db
        systems: dict[str, Callable[[], float]] = {
            "Celery, Redis result backend": lambda: celery.plain_celery(celery.REDIS_RESULTS),
            "Celery, PostgreSQL result backend": lambda: celery.plain_celery(backend),
            "Celery through tasktrail (PostgreSQL)": lambda: celery.tracked_celery(tracked_db),
        }
        for name, run in systems.items():
            figures[name] = run()
    tracked = figures["Celery through tasktrail (PostgreSQL)"]
    plain_pg = figures["Celery, PostgreSQL result backend"]
    table = Table("system", "tasks/s", "ms per task", "time ÷ plain Celery (PostgreSQL results)")
    for name, rate in figures.items():
        table.add_row(name, f"{rate:,.1f}", f"{1000 / rate:,.2f}", f"{plain_pg / rate:.2f}x")
    console.print(
        f"{celery.TASKS} tasks, 3 progress steps each, one worker with "
        f"{celery.CONCURRENCY} prefork processes; every task's result checked"
    )
    console.print(table)
    # The goal: durable tracking costs at most 1.3x the time of plain Celery that
    # stores its results and progress in PostgreSQL too.
    overhead = plain_pg / tracked
    verdict = "[green]within[/]" if overhead <= 1.3 else "[red]above[/]"
    console.print(
        f"Overhead, tracked ÷ plain (PostgreSQL result backend): {overhead:.2f}x the time per "
        f"task — {verdict} the goal of ≤ 1.3x. (Against the Redis result backend: "
        f"{figures['Celery, Redis result backend'] / tracked:.2f}x.)"
    )


def main() -> None:
    console = Console()
    console.print(
        f"{TASKS} tasks with 3 progress steps each; {SAMPLES} latency samples; "
        f"{os.cpu_count()} CPUs"
    )
    rows: dict[str, dict[str, float]] = {}
    for name, database in BACKENDS.items():
        try:
            with database() as url:
                rows[name] = measure(url)
        except Exception as exc:  # a missing PostgreSQL skips its row, not the run
            console.print(f"[yellow]{name} skipped: {exc}[/]")
    table = Table("", *rows)
    for key in next(iter(rows.values()), {}):
        unit = " ms" if "p5" in key or "p9" in key else ""
        table.add_row(key + unit, *(f"{row[key]:,.1f}" for row in rows.values()))
    for concurrency in (1, 4):
        key = f"tasks/s c={concurrency}"
        table.add_row(
            f"ratio tasks/updates c={concurrency}",
            *(f"{row[key] / row['updates/s']:.3f}" for row in rows.values()),
        )
    console.print(table)
    console.print(
        "updates/s: single-row committed UPDATEs per second, one connection (the baseline). "
        "Latency: submit → completed of a no-op task to an idle worker; 'other process' "
        "is a second Trail (PostgreSQL NOTIFY; SQLite polls every 0.5 s)."
    )
    try:
        celery_table(console)
    except Exception as exc:  # no Redis or PostgreSQL: say so, keep the other table
        console.print(f"[yellow]Celery comparison skipped: {exc}[/]")


if __name__ == "__main__":
    main()
