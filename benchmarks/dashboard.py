"""``python -m benchmarks.dashboard``: how long the dashboard takes to render its pages over
a big PostgreSQL database. Never run by the test suite (filling takes minutes).

Fills a scratch database with ``BENCH_DASH_TASKS`` tasks (default 1,000,000), five events
each (so 5,000,000 by default) and one link each (100 tasks per resource), generated inside
PostgreSQL with a realistic status mix (mostly completed, a few failed, queued and running);
then requests the tasks page (unfiltered, filtered by status, name, queue and resource, and
its second page), a task page and a resource page ``BENCH_DASH_SAMPLES`` times each
(default 50) from a real server on loopback and prints the p50 and p95 of the time to the
whole response. ``make bench-dashboard`` runs it.
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from rich.console import Console
from rich.table import Table

import tasktrail.web
from benchmarks.databases import postgres_database
from tasktrail import Trail
from tasktrail.serve import bind, url_of

TASKS = int(os.environ.get("BENCH_DASH_TASKS", "1000000"))
SAMPLES = int(os.environ.get("BENCH_DASH_SAMPLES", "50"))
EVENTS_PER_TASK = 5

# Bulk generation in the database itself: the store's one-task-at-a-time writes would take
# hours for this much data, and only the shape of the rows matters to the reading side.
FILL_TASKS = """
INSERT INTO tasktrail_tasks (id, name, params, status, progress, attempts, max_attempts,
    backoff, queue, priority, created_at, updated_at, queued_at, started_at, completed_at,
    version)
SELECT lpad(to_hex(n), 26, '0'), 'bench.task' || (n %% 20), jsonb_build_object('n', n),
    CASE WHEN n %% 100 < 85 THEN 'completed' WHEN n %% 100 < 90 THEN 'failed'
        WHEN n %% 100 < 92 THEN 'cancelled' WHEN n %% 100 < 95 THEN 'queued'
        WHEN n %% 100 < 97 THEN 'running' ELSE 'scheduled' END,
    100, 1, 3, 2, 'q' || (n %% 4), 0,
    now() - make_interval(secs => %(tasks)s - n), now(), now(), now(), now(), 1
FROM generate_series(1, %(tasks)s) AS n
"""
# Links carry their task's activity (queued, running or scheduled above), as the store
# writes it; setting it by an UPDATE afterwards left a dead version of every active link.
FILL_LINKS = """
INSERT INTO tasktrail_links (task_id, resource_type, resource_id, role, created_at, active)
SELECT lpad(to_hex(n), 26, '0'), 'roadmap', 'r' || (n / 100), 'creation', now(),
    n %% 100 >= 92
FROM generate_series(1, %(tasks)s) AS n
"""
FILL_EVENTS = """
INSERT INTO tasktrail_events (task_id, type, from_status, to_status, progress, step,
    message, data, actor, created_at)
SELECT lpad(to_hex(n), 26, '0'), CASE WHEN e = 2 THEN 'progress' ELSE 'transition' END,
    NULL, 'queued', 20 * e, 'step ' || e, 'bench', '{"transition": "submit"}'::jsonb,
    'bench', now() - make_interval(secs => %(tasks)s - n)
FROM generate_series(1, %(tasks)s) AS n, generate_series(1, %(events)s) AS e
"""


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` on a free loopback port in a thread while the block runs; yields its URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def fill(url: str) -> None:
    """Create the schema and the rows, then vacuum and analyze them, as autovacuum would
    after a load this size."""
    Trail(url, auto_migrate=True).close()
    engine = sa.create_engine(url)
    values = {"tasks": TASKS, "events": EVENTS_PER_TASK}
    with engine.begin() as conn:
        for statement in (FILL_TASKS, FILL_LINKS, FILL_EVENTS):
            conn.exec_driver_sql(statement, values)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def timings(get: Callable[[], httpx.Response]) -> tuple[float, float]:
    """p50 and p95 in milliseconds of ``SAMPLES`` requests (after one warm-up)."""
    get().raise_for_status()
    samples = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        get().raise_for_status()
        samples.append((time.perf_counter() - start) * 1000)
    percentiles = statistics.quantiles(samples, n=20)
    return statistics.median(samples), percentiles[18]


def second_page(http: httpx.Client) -> str:
    """The path of the tasks page's second page (its "Next page" link)."""
    found = re.search(r'href="([^"]+)" rel="next"', http.get("/").text)
    if found is None:
        raise SystemExit("the tasks page has no next page: fill more tasks")
    return found.group(1).replace("&amp;", "&")


def main() -> None:
    """Fill, serve, measure, print."""
    console = Console()
    with postgres_database() as url:
        started = time.perf_counter()
        fill(url)
        console.print(f"filled {TASKS:,} tasks in {time.perf_counter() - started:.0f} s")
        trail = Trail(url)
        app = FastAPI()
        tasktrail.web.mount(app, trail, token="")
        task_id = format(TASKS // 2, "x").rjust(26, "0")
        resource = f"r{TASKS // 200}"
        pages = {
            "tasks page (/)": "/",
            "tasks page, status=failed": "/?status=failed",
            "tasks page, name=bench.task7": "/?name=bench.task7",
            "tasks page, queue=q2": "/?queue=q2",
            "tasks page, name and status=failed": "/?name=bench.task7&status=failed",
            f"tasks page, resource=roadmap:{resource}": f"/?resource=roadmap:{resource}",
            "task page": f"/tasks/{task_id}",
            "resource page (100 tasks)": f"/resources/roadmap/{resource}",
        }
        table = Table(title=f"dashboard render, {TASKS:,} tasks, {TASKS * 5:,} events")
        for column in ("page", "p50 ms", "p95 ms"):
            table.add_column(column)
        with serve(app) as base, httpx.Client(base_url=base, timeout=120) as http:
            pages["tasks page, second page (cursor)"] = second_page(http)
            for label, path in pages.items():
                p50, p95 = timings(lambda path=path: http.get(path))  # type: ignore[misc]
                table.add_row(label, f"{p50:.1f}", f"{p95:.1f}")
        trail.close()
        console.print(table)


if __name__ == "__main__":
    main()
