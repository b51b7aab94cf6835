"""``python -m benchmarks.peers`` (``make bench-peers``): tasktrail against Procrastinate on
the tracked lifecycle, and tasktrail's queries at scale. Prints Markdown tables and writes
them, with the machine description and a chart per table, under ``benchmarks/results/``.

Environment: ``BENCH_PARTS`` (``lifecycle,scale``), ``BENCH_TASKS`` (5000),
``BENCH_SAMPLES`` (200), ``BENCH_REPEATS`` (3), ``BENCH_SCALE_SIZES`` (``10000,100000,1000000``),
``BENCH_CELERY=1`` to add the Celery rows of ``benchmarks/celery.py`` (tasks/s, and the idle
latency of Celery alone with Redis results and of Celery through tasktrail). Celery alone
with Redis results, which tasktrail's goals are set against, runs in every round, so that
each ratio against it divides figures of the same round.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from benchmarks.databases import postgres_database, sqlite_database
from benchmarks.peers import lifecycle, report, scale
from benchmarks.peers.lifecycle import Figures

TASKS = int(os.environ.get("BENCH_TASKS", "5000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "200"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
CELERY_REDIS = "Celery alone (Redis results)"
PARTS = os.environ.get("BENCH_PARTS", "lifecycle,scale").split(",")
SIZES = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "10000,100000,1000000").split(",")]


def one_round() -> dict[str, Figures]:
    """Every system once, each on a fresh database."""
    figures: dict[str, Figures] = {}
    with sqlite_database() as url:
        figures["tasktrail (sqlite)"] = lifecycle.tasktrail_run(url, tasks=TASKS, samples=SAMPLES)
    with postgres_database() as url:
        figures["tasktrail (postgresql)"] = lifecycle.tasktrail_run(
            url, tasks=TASKS, samples=SAMPLES
        )
    with postgres_database() as url:
        figures["Procrastinate"] = lifecycle.procrastinate_run(url, tasks=TASKS, samples=SAMPLES)
    return figures


@dataclass(frozen=True)
class CeleryRow:
    """One Celery system's figures: tasks/s with the tasks sent while the worker runs, its
    idle latency (p50, p95 ms) and tasks/s draining a queue loaded before the worker starts
    (the lifecycle's way), where measured."""

    tasks_per_s: float
    latency_ms: tuple[float, float] | None = None
    drain_per_s: float | None = None


def with_celery() -> bool:
    """Whether this run has the Celery rows (``BENCH_CELERY=1``)."""
    return os.environ.get("BENCH_CELERY") == "1"


def celery_redis_row() -> CeleryRow:
    """Celery alone with Redis results, once: tasks/s both ways, and the idle latency over
    ``SAMPLES`` tasks."""
    from benchmarks import celery

    redis = celery.REDIS_RESULTS
    return CeleryRow(
        celery.plain_celery(redis),
        celery.plain_celery_latency(redis, SAMPLES),
        celery.plain_celery_drain(redis),
    )


def celery_rows() -> dict[str, CeleryRow]:
    """The Celery rows measured once per run (Celery through tasktrail, Celery alone with
    PostgreSQL results) when ``BENCH_CELERY=1``; empty otherwise. Tasks/s for each, and the
    idle latency over ``SAMPLES`` tasks for Celery through tasktrail (on a database of its
    own)."""
    if not with_celery():
        return {}
    from benchmarks import celery

    with (
        postgres_database() as tracked_db,
        postgres_database() as latency_db,
        postgres_database() as results_db,
    ):
        return {
            "Celery through tasktrail (postgresql)": CeleryRow(
                celery.tracked_celery(tracked_db),
                celery.tracked_celery_latency(latency_db, SAMPLES),
            ),
            "Celery alone (PostgreSQL results)": CeleryRow(celery.plain_celery("db+" + results_db)),
        }


def median(
    rounds: list[dict[str, Figures]], system: str, pick: Callable[[Figures], float]
) -> float:
    """The median over rounds of one figure of one system."""
    return statistics.median(pick(r[system]) for r in rounds)


def ratio(rounds: list[dict[str, Figures]], pick: Callable[[Figures], float]) -> str:
    """The median over rounds of tasktrail on PostgreSQL's figure ÷ Procrastinate's."""
    values = (pick(r["tasktrail (postgresql)"]) / pick(r["Procrastinate"]) for r in rounds)
    return f"{statistics.median(values):.2f}"


def lifecycle_section() -> str:
    """Run the rounds; the Markdown section with the lifecycle table and its ratios."""
    rounds = []
    redis_rounds = []
    for number in range(1, REPEATS + 1):
        rounds.append(one_round())
        for figures in rounds[-1].values():
            print(f"round {number}: {figures}", flush=True)
        if with_celery():
            redis_rounds.append(celery_redis_row())
            print(f"round {number}: {CELERY_REDIS}: {redis_rounds[-1]}", flush=True)
    systems = list(rounds[0])
    efficiency = lambda f: f.tasks_per_s / (f.baseline_updates_per_s / f.commits_per_task)  # noqa: E731
    rows = [
        [
            system,
            f"{median(rounds, system, lambda f: f.submit_per_s):,.0f}",
            f"{median(rounds, system, lambda f: f.bulk_submit_per_s):,.0f}",
            f"{median(rounds, system, lambda f: f.tasks_per_s):,.0f}",
            f"{median(rounds, system, lambda f: f.p50_ms):,.1f}",
            f"{median(rounds, system, lambda f: f.p95_ms):,.1f}",
            f"{median(rounds, system, lambda f: f.commits_per_task):,.1f}",
            f"{median(rounds, system, lambda f: f.baseline_updates_per_s):,.0f}",
            f"{median(rounds, system, efficiency):.2f}",
        ]
        for system in systems
    ]
    headers = ["system", "submit/s", "bulk submit/s", "tasks/s", "p50 ms", "p95 ms", "commits/task",
               "baseline UPDATEs/s", "tasks/s ÷ (baseline ÷ commits/task)"]  # fmt: skip
    ratios = [
        ["tasktrail PG tasks/s ÷ Procrastinate tasks/s", ratio(rounds, lambda f: f.tasks_per_s)],
        ["tasktrail PG submit/s ÷ Procrastinate submit/s", ratio(rounds, lambda f: f.submit_per_s)],
        ["tasktrail PG bulk submit/s ÷ Procrastinate bulk submit/s",
         ratio(rounds, lambda f: f.bulk_submit_per_s)],
        ["tasktrail PG commits/task ÷ Procrastinate commits/task",
         ratio(rounds, lambda f: f.commits_per_task)],
        ["tasktrail PG p50 latency ÷ Procrastinate p50 latency", ratio(rounds, lambda f: f.p50_ms)],
    ]  # fmt: skip
    text = [
        "## Tracked lifecycle",
        "",
        f"{TASKS} no-op tasks, each storing 3 progress steps durably, then completing. "
        "Submitted one at a time from one process (bulk: as many again in batches of "
        f"{lifecycle.BATCH}, one call each); drained by {lifecycle.WORKERS} worker "
        f"processes with concurrency {lifecycle.CONCURRENCY} each. Latency: submit → "
        f"terminal of {SAMPLES} tasks to idle workers. Medians of {REPEATS} rounds; each "
        "round measures the baseline on the same database just before.",
        "",
        markdown_or_print(headers, rows),
    ]
    for key, unit in (("tasks/s", "tasks per second"), ("submit/s", "submits per second"),
                      ("bulk submit/s", "submits per second"),
                      ("commits/task", "commits per task")):  # fmt: skip
        slug = key.replace("/", "_per_").replace(" ", "_")
        text += chart_lines(f"lifecycle_{slug}.png", f"Tracked lifecycle: {key}", rows, unit,
                            column=headers.index(key))  # fmt: skip
    text += [
        "",
        markdown_or_print(["ratio (same round, median)", "value"], ratios),
        *chart_lines("lifecycle_ratios_procrastinate.png",
                     "tasktrail on PostgreSQL ÷ Procrastinate (same round, median)", ratios,
                     "ratio (1: equal)", decimals=2, reference=1.0),
        *celery_text(rounds, celery_rows(), redis_rounds),
    ]  # fmt: skip
    return "\n".join(text)


def chart_lines(name: str, title: str, rows: list[list[str]], unit: str, *, column: int = 1,
                decimals: int = 1, reference: float | None = None) -> list[str]:  # fmt: skip
    """A bar chart of a table's ``rows``: each row's ``column`` (the number a cell starts
    with) against its first cell, written to ``name`` under the results. The Markdown lines
    that show it, none without matplotlib."""
    labels = [row[0] for row in rows]
    values = [float(row[column].split()[0].replace(",", "")) for row in rows]
    if not report.chart(report.RESULTS / name, title, labels, values, unit, decimals=decimals,
                        reference=reference):  # fmt: skip
        return []
    return ["", f"![{title}]({name})"]


def latency_cells(row: CeleryRow) -> list[str]:
    """The p50 and p95 cells of a Celery row: "n/a" where its latency was not measured."""
    if row.latency_ms is None:
        return ["n/a", "n/a"]
    return [f"{ms:,.1f}" for ms in row.latency_ms]


def median_row(rows: list[CeleryRow]) -> CeleryRow:
    """The medians of several rounds' figures of one Celery system (every figure measured in
    each)."""
    return CeleryRow(
        statistics.median(row.tasks_per_s for row in rows),
        (
            statistics.median(latency(row)[0] for row in rows),
            statistics.median(latency(row)[1] for row in rows),
        ),
        statistics.median(drain(row) for row in rows),
    )


def celery_text(
    rounds: list[dict[str, Figures]], extra: dict[str, CeleryRow], redis_rounds: list[CeleryRow]
) -> list[str]:
    """The Celery table, the overhead line and the ratios of tasktrail's figures against
    Celery alone with Redis results, each divided within its round (``redis_rounds``, one
    per round), median over the rounds, as lines to append; none without ``extra``."""
    if not extra:
        return []
    rows = {
        **extra,
        f"{CELERY_REDIS}, median of {len(redis_rounds)} rounds": median_row(redis_rounds),
    }
    table = [
        [name, f"{row.tasks_per_s:,.1f}",
         "n/a" if row.drain_per_s is None else f"{row.drain_per_s:,.1f}", *latency_cells(row)]
        for name, row in rows.items()
    ]  # fmt: skip
    text = ["", markdown_or_print(["Celery (benchmarks/celery.py)", "tasks/s, sent while running",
                                   "tasks/s, queue loaded first", "p50 ms", "p95 ms"],
                                  table)]  # fmt: skip
    text += chart_lines("lifecycle_celery_tasks_per_s.png", "Celery: tasks/s, sent while running",
                        table, "tasks per second")  # fmt: skip
    text += ["", f"p50 / p95 ms: submit → completed of {SAMPLES} tasks, one at a time to an idle "
                 "worker, as the lifecycle's rows; Celery alone from the wall clock just before "
                 "`send_task` to the result's `date_done`, through tasktrail from `created_at` to "
                 "`completed_at`. Tasks/s sent while running: from the first send to the last "
                 "result, the sending client beside the worker (tracked and plain alike); queue "
                 "loaded first: sent before the worker starts, then from the first result's "
                 "`date_done` to the last, as the lifecycle's drains (which start their workers "
                 "after the submits and count from the first finished task). Celery alone with "
                 "Redis results runs in every round, after the lifecycle's systems; the others "
                 "once, after the rounds."]  # fmt: skip
    overhead = (
        extra["Celery alone (PostgreSQL results)"].tasks_per_s
        / extra["Celery through tasktrail (postgresql)"].tasks_per_s
    )
    text += ["", f"Overhead, tracked ÷ plain (PostgreSQL result backend): {overhead:.2f}x "
                 "the time per task (goal ≤ 1.3x)."]  # fmt: skip
    # (tasktrail's figure, Celery's figure it is divided by, Celery's figure named)
    figures: list[tuple[str, Callable[[Figures], float], Callable[[CeleryRow], float], str]] = [
        ("tasks/s", lambda f: f.tasks_per_s, drain, "tasks/s, queue loaded first"),
        ("p50 latency", lambda f: f.p50_ms, p50, "p50 latency"),
        ("tasks/s", lambda f: f.tasks_per_s, lambda row: row.tasks_per_s,
         "tasks/s, sent while running (context: the divisor until 2026-12-06)"),
    ]  # fmt: skip
    against_celery = [
        [f"{system} {key} ÷ {CELERY_REDIS} {celery_key}",
         same_round_ratio(rounds, redis_rounds, system, pick, pick_celery)]
        for key, pick, pick_celery, celery_key in figures
        for system in ("tasktrail (postgresql)", "tasktrail (sqlite)")
    ]  # fmt: skip
    return [*text, "", markdown_or_print(["ratio against Celery + Redis (same round, median)",
                                          "value"], against_celery),
            *chart_lines("lifecycle_ratios_celery_redis.png",
                         "tasktrail ÷ Celery + Redis (same round, median)", against_celery,
                         "ratio (1: equal)", decimals=2, reference=1.0)]  # fmt: skip


def drain(row: CeleryRow) -> float:
    """The drain rate of a Celery row that has one (every round's Celery + Redis)."""
    assert row.drain_per_s is not None
    return row.drain_per_s


def latency(row: CeleryRow) -> tuple[float, float]:
    """The idle latency (p50, p95 ms) of a Celery row that has one (every round's Celery +
    Redis)."""
    assert row.latency_ms is not None
    return row.latency_ms


def p50(row: CeleryRow) -> float:
    """The p50 latency of a Celery row that has one."""
    return latency(row)[0]


def same_round_ratio(
    rounds: list[dict[str, Figures]],
    redis_rounds: list[CeleryRow],
    system: str,
    pick: Callable[[Figures], float],
    pick_celery: Callable[[CeleryRow], float],
) -> str:
    """The median over rounds of ``system``'s figure ÷ Celery + Redis's in the same round,
    with the rounds' own ratios."""
    values = [pick(r[system]) / pick_celery(c) for r, c in zip(rounds, redis_rounds, strict=True)]
    each = ", ".join(f"{v:.2f}" for v in values)
    return f"{statistics.median(values):.2f} ({each})"


def markdown_or_print(headers: list[str], rows: list[list[str]]) -> str:
    """The Markdown table, also printed as soon as it is ready."""
    table = report.markdown(headers, rows)
    print(table, flush=True)
    return table


def main() -> None:
    report.RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = [f"# tasktrail benchmarks ({stamp})", "", "## Machine", "", report.machine()]
    for part in PARTS:
        started = time.perf_counter()
        if part == "lifecycle":
            body = lifecycle_section()
        elif part == "scale":
            body = scale.section(SIZES, markdown_or_print)
        else:
            raise SystemExit(f"unknown part {part!r}: lifecycle or scale")
        print(f"{part}: {time.perf_counter() - started:.0f}s", flush=True)
        (report.RESULTS / f"{part}.md").write_text("\n".join([*header, "", body]) + "\n")


if __name__ == "__main__":
    main()
