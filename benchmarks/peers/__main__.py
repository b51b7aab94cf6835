"""``python -m benchmarks.peers`` (``make bench-peers``): tasktrail against Procrastinate on
the tracked lifecycle, and tasktrail's queries at scale. Prints Markdown tables and writes
them, with the machine description and a chart per table, under ``benchmarks/results/``.

Environment: ``BENCH_PARTS`` (``lifecycle,scale``), ``BENCH_TASKS`` (5000),
``BENCH_SAMPLES`` (200), ``BENCH_REPEATS`` (3), ``BENCH_SCALE_SIZES`` (``10000,100000,1000000``),
``BENCH_CELERY=1`` to add the Celery rows of ``benchmarks/celery.py``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks.databases import postgres_database, sqlite_database
from benchmarks.peers import lifecycle, report, scale
from benchmarks.peers.lifecycle import Figures

TASKS = int(os.environ.get("BENCH_TASKS", "5000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "200"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
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


def celery_rows() -> dict[str, float]:
    """The hook for the Celery rows: tasks/s of ``benchmarks/celery.py``'s runs (Celery
    through tasktrail, Celery alone) when ``BENCH_CELERY=1``; empty otherwise."""
    if os.environ.get("BENCH_CELERY") != "1":
        return {}
    from benchmarks import celery

    with postgres_database() as tracked_db, postgres_database() as results_db:
        return {
            "Celery through tasktrail (postgresql)": celery.tracked_celery(tracked_db),
            "Celery alone (PostgreSQL results)": celery.plain_celery("db+" + results_db),
            "Celery alone (Redis results)": celery.plain_celery(celery.REDIS_RESULTS),
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
    for number in range(1, REPEATS + 1):
        rounds.append(one_round())
        for figures in rounds[-1].values():
            print(f"round {number}: {figures}", flush=True)
    systems = list(rounds[0])
    efficiency = lambda f: f.tasks_per_s / (f.baseline_updates_per_s / f.commits_per_task)  # noqa: E731
    rows = [
        [
            system,
            f"{median(rounds, system, lambda f: f.submit_per_s):,.0f}",
            f"{median(rounds, system, lambda f: f.tasks_per_s):,.0f}",
            f"{median(rounds, system, lambda f: f.p50_ms):,.1f}",
            f"{median(rounds, system, lambda f: f.p95_ms):,.1f}",
            f"{median(rounds, system, lambda f: f.commits_per_task):,.1f}",
            f"{median(rounds, system, lambda f: f.baseline_updates_per_s):,.0f}",
            f"{median(rounds, system, efficiency):.2f}",
        ]
        for system in systems
    ]
    headers = ["system", "submit/s", "tasks/s", "p50 ms", "p95 ms", "commits/task",
               "baseline UPDATEs/s", "tasks/s ÷ (baseline ÷ commits/task)"]  # fmt: skip
    ratios = [
        ["tasktrail PG tasks/s ÷ Procrastinate tasks/s", ratio(rounds, lambda f: f.tasks_per_s)],
        ["tasktrail PG submit/s ÷ Procrastinate submit/s", ratio(rounds, lambda f: f.submit_per_s)],
        ["tasktrail PG commits/task ÷ Procrastinate commits/task",
         ratio(rounds, lambda f: f.commits_per_task)],
        ["tasktrail PG p50 latency ÷ Procrastinate p50 latency", ratio(rounds, lambda f: f.p50_ms)],
    ]  # fmt: skip
    extra = celery_rows()
    text = [
        "## Tracked lifecycle",
        "",
        f"{TASKS} no-op tasks, each storing 3 progress steps durably, then completing. "
        f"Submitted one at a time from one process; drained by {lifecycle.WORKERS} worker "
        f"processes with concurrency {lifecycle.CONCURRENCY} each. Latency: submit → "
        f"terminal of {SAMPLES} tasks to idle workers. Medians of {REPEATS} rounds; each "
        "round measures the baseline on the same database just before.",
        "",
        markdown_or_print(headers, rows),
        "",
        markdown_or_print(["ratio (same round, median)", "value"], ratios),
    ]
    if extra:
        text += ["", markdown_or_print(["Celery (benchmarks/celery.py)", "tasks/s"],
                                       [[k, f"{v:,.1f}"] for k, v in extra.items()])]  # fmt: skip
        overhead = (
            extra["Celery alone (PostgreSQL results)"]
            / extra["Celery through tasktrail (postgresql)"]
        )
        text += ["", f"Overhead, tracked ÷ plain (PostgreSQL result backend): {overhead:.2f}x "
                     "the time per task (goal ≤ 1.3x)."]  # fmt: skip
        redis = extra["Celery alone (Redis results)"]
        against_celery = [
            [f"{system} tasks/s ÷ Celery alone (Redis results) tasks/s",
             f"{median(rounds, system, lambda f: f.tasks_per_s) / redis:.2f}"]
            for system in ("tasktrail (postgresql)", "tasktrail (sqlite)")
        ]  # fmt: skip
        text += ["", markdown_or_print(["ratio against Celery + Redis", "value"], against_celery)]
    for key, unit in (("tasks/s", "tasks per second"), ("submit/s", "submits per second"),
                      ("commits/task", "commits per task")):  # fmt: skip
        column = headers.index(key)
        slug = key.replace("/", "_per_")
        values = [float(row[column].replace(",", "")) for row in rows]
        title = f"Tracked lifecycle: {key}"
        report.chart(report.RESULTS / f"lifecycle_{slug}.png", title, systems, values, unit)
        text += ["", f"![{key}](lifecycle_{slug}.png)"]
    return "\n".join(text)


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
