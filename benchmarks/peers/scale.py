"""Scale: fill a database with N tasks (3 links and 5 events each, a realistic status mix)
with set-based SQL, then time the reads an app and a worker make, at each size.

Every task links to its own ``document``, to one of N/100 ``project`` resources (100 tasks
each, 8 of them active, at every N: the light resource) and to one of N/1,000 ``user``
resources (1,000 tasks each, 80 of them active, at every N: the heavy resource). Both are
of one size at every N, so that a query about one shows how its cost moves with the size
of the tables, not with the size of its answer (until 2026-12-06 there were 1,000 users at
every N: a user's tasks, and its answers, grew with N).
Status mix by ``g % 100``: 85 completed, 5 failed, 2 cancelled, 3 queued, 2 running (fresh
heartbeat), 3 scheduled. A resource is not a function of ``g % 100`` (as ``g % 1000``
would be: then each user's tasks would all share one status, and 8 % of users would have
only active tasks), so every resource gets that mix (at 10,000 tasks, a user's 1,000
tasks have each status of it ten times).

A link is written with its task's activity, as the store writes it, and PostgreSQL's
tables are then vacuumed and analyzed, as autovacuum would after a load this size: an
``UPDATE`` of the links' activity after the fill left 240,000 dead link versions at
1,000,000 tasks on a server without autovacuum (as this machine's), which every read of
links stepped over.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from benchmarks.databases import postgres_database, sqlite_database
from tasktrail import Trail
from tasktrail.states import CLAIM, changes
from tasktrail.store import statements as q

SAMPLES = int(os.environ.get("BENCH_SCALE_SAMPLES", "1000"))
BLOCKS = int(os.environ.get("BENCH_SCALE_BLOCKS", "3"))

STATUS = """CASE
  WHEN g % 100 < 85 THEN 'completed' WHEN g % 100 < 90 THEN 'failed'
  WHEN g % 100 < 92 THEN 'cancelled' WHEN g % 100 < 95 THEN 'queued'
  WHEN g % 100 < 97 THEN 'running' ELSE 'scheduled' END"""
#: Whether ``STATUS`` makes task ``g`` active (queued, running or scheduled).
ACTIVE = "g % 100 >= 92"

PG_TASKS = f"""
INSERT INTO tasktrail_tasks (id, name, params, status, progress, attempts, max_attempts,
  created_at, updated_at, queued_at, started_at, completed_at, heartbeat_at, run_after,
  worker, error)
SELECT lpad(g::text, 26, '0'), 'bench.job' || (g % 5), '{{}}'::jsonb, s.status,
  CASE WHEN s.status = 'completed' THEN 100 ELSE 0 END, 1, 3,
  now() - make_interval(secs => :n - g), now() - make_interval(secs => :n - g),
  now() - make_interval(secs => :n - g),
  CASE WHEN s.status IN ('completed', 'failed', 'running') THEN now() END,
  CASE WHEN s.status IN ('completed', 'failed', 'cancelled') THEN now() END,
  CASE WHEN s.status = 'running' THEN now() + interval '1 hour' END,
  CASE WHEN s.status = 'scheduled' THEN now() + interval '1 day' END,
  CASE WHEN s.status = 'running' THEN 'bench-worker' END,
  CASE WHEN s.status = 'failed' THEN 'boom' END
FROM generate_series(1, :n) g CROSS JOIN LATERAL (SELECT {STATUS} AS status) s
"""
PG_LINKS = f"""
INSERT INTO tasktrail_links (task_id, resource_type, resource_id, role, created_at, active)
SELECT lpad(g::text, 26, '0'), r.type, r.id, r.role, now(), {ACTIVE}
FROM generate_series(1, :n) g CROSS JOIN LATERAL (VALUES
  ('project', 'p' || ((g / 100 + g % 100 * :spread) % :projects), 'owner'),
  ('user', 'u' || ((g / 100 + g % 100 * :user_spread) % :users), 'requested_by'),
  ('document', 'd' || g, 'subject')) r(type, id, role)
"""
PG_EVENTS = """
INSERT INTO tasktrail_events (task_id, type, to_status, progress, step, created_at)
SELECT lpad(g::text, 26, '0'), CASE WHEN k IN (1, 5) THEN 'transition' ELSE 'progress' END,
  CASE k WHEN 1 THEN 'queued' WHEN 5 THEN 'completed' END, (k - 1) * 25, 'step ' || k,
  now() - make_interval(secs => :n - g)
FROM generate_series(1, :n) g CROSS JOIN generate_series(1, 5) k ORDER BY g, k
"""

SQLITE_SERIES = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
SQLITE_ID = "substr('00000000000000000000000000' || g, -26, 26)"
SQLITE_TIME = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (:n - g) || ' seconds')"
SQLITE_TASKS = f"""
INSERT INTO tasktrail_tasks (id, name, params, status, progress, attempts, max_attempts,
  backoff, queue, priority, version, created_at, updated_at, queued_at, started_at,
  completed_at, heartbeat_at, run_after, worker, error)
{SQLITE_SERIES}, t(g, status) AS (SELECT g, {STATUS} FROM s)
SELECT {SQLITE_ID}, 'bench.job' || (g % 5), '{{}}', status,
  CASE WHEN status = 'completed' THEN 100 ELSE 0 END, 1, 3, 2, 'default', 0, 1,
  {SQLITE_TIME}, {SQLITE_TIME}, {SQLITE_TIME},
  CASE WHEN status IN ('completed', 'failed', 'running') THEN datetime('now') END,
  CASE WHEN status IN ('completed', 'failed', 'cancelled') THEN datetime('now') END,
  CASE WHEN status = 'running' THEN datetime('now', '+1 hour') END,
  CASE WHEN status = 'scheduled' THEN datetime('now', '+1 day') END,
  CASE WHEN status = 'running' THEN 'bench-worker' END,
  CASE WHEN status = 'failed' THEN 'boom' END
FROM t
"""
SQLITE_LINKS = f"""
INSERT INTO tasktrail_links (task_id, resource_type, resource_id, role, created_at, active)
{SQLITE_SERIES}, r(k, type, role) AS (VALUES (1, 'project', 'owner'),
  (2, 'user', 'requested_by'), (3, 'document', 'subject'))
SELECT {SQLITE_ID}, r.type,
  CASE r.k WHEN 1 THEN 'p' || ((g / 100 + g % 100 * :spread) % :projects)
    WHEN 2 THEN 'u' || ((g / 100 + g % 100 * :user_spread) % :users) ELSE 'd' || g END,
  r.role, datetime('now'), {ACTIVE}
FROM s CROSS JOIN r
"""
SQLITE_EVENTS = f"""
INSERT INTO tasktrail_events (task_id, type, to_status, progress, step, created_at)
{SQLITE_SERIES}, e(k) AS (VALUES (1), (2), (3), (4), (5))
SELECT {SQLITE_ID}, CASE WHEN k IN (1, 5) THEN 'transition' ELSE 'progress' END,
  CASE k WHEN 1 THEN 'queued' WHEN 5 THEN 'completed' END, (k - 1) * 25, 'step ' || k,
  {SQLITE_TIME}
FROM s CROSS JOIN e ORDER BY g, k
"""
RESOURCE_SIZES = """
SELECT min(tasks), max(tasks), min(active), max(active) FROM (
  SELECT count(*) AS tasks, sum(CASE WHEN active THEN 1 ELSE 0 END) AS active
  FROM tasktrail_links WHERE resource_type = :type GROUP BY resource_id) sizes
"""
ACTIVE_COUNTS = """
SELECT (SELECT count(*) FROM tasktrail_links WHERE active),
  (SELECT 3 * count(*) FROM tasktrail_tasks WHERE status IN ('queued', 'running', 'scheduled'))
"""


def fill(trail: Trail, n: int) -> float:
    """Insert ``n`` generated tasks with their links and events; seconds it took."""
    sqlite = trail.engine.dialect.name == "sqlite"
    statements = (SQLITE_TASKS, SQLITE_LINKS, SQLITE_EVENTS) if sqlite else (
        PG_TASKS, PG_LINKS, PG_EVENTS)  # fmt: skip
    params = {
        "n": n,
        "projects": projects(n),
        "spread": spread(projects(n)),
        "users": users(n),
        "user_spread": spread(users(n)),
    }
    start = time.perf_counter()
    with trail.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)
    with trail.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "ANALYZE" if sqlite else "VACUUM ANALYZE"
        )
    seconds = time.perf_counter() - start
    with trail.engine.connect() as conn:
        active_links, links_of_active_tasks = conn.execute(sa.text(ACTIVE_COUNTS)).one()
        assert active_links == links_of_active_tasks, "links not active exactly with their task"
        for resource_type in ("project", "user"):
            fewest, most, fewest_active, most_active = conn.execute(
                sa.text(RESOURCE_SIZES), {"type": resource_type}
            ).one()
            assert (fewest, fewest_active) == (most, most_active), (
                f"{resource_type}s of uneven size: {fewest}-{most} tasks, "
                f"{fewest_active}-{most_active} active"
            )
    return seconds


def projects(n: int) -> int:
    """How many ``project`` resources the generator makes for ``n`` tasks (100 tasks each)."""
    return max(n // 100, 1)


def users(n: int) -> int:
    """How many ``user`` resources the generator makes for ``n`` tasks (1,000 tasks each)."""
    return max(n // 1000, 1)


def spread(resources: int) -> int:
    """The step between the resources of tasks ``g`` and ``g + 1`` in the fill: task ``g``
    goes to resource ``(g / 100 + g % 100 * spread) % resources``, which deals each run of
    100 tasks (the whole status mix) across the resources so that every resource gets
    every status as often as the mix says."""
    return max(resources // 100, 1)


def task_id(g: int) -> str:
    """The generated id of task number ``g``."""
    return str(g).rjust(26, "0")


def queries(trail: Trail, n: int) -> dict[str, Callable[[random.Random], object]]:
    """The timed operations, each taking a random source to pick its task or resource."""

    def claim(_rng: random.Random) -> object:
        now = datetime.now(UTC)
        dialect = trail.engine.dialect.name
        claim = q.claim_next(None, None, changes(CLAIM, worker="bench"), now, dialect)
        with trail.engine.connect() as conn, conn.begin() as tx:
            row = conn.execute(claim.statement, claim.params).first()
            tx.rollback()  # measure the claim, keep the queue as it is
        return row

    def round_trip(_rng: random.Random) -> object:
        with trail.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT 1").scalar()

    def user(rng: random.Random) -> str:
        return f"u{rng.randrange(users(n))}"

    def project(rng: random.Random) -> str:
        return f"p{rng.randrange(projects(n))}"

    return {
        "SELECT 1 (the floor: one round trip)": round_trip,
        "get": lambda rng: trail.get(task_id(rng.randint(1, n))),
        "status_check (user: 1,000 tasks, 80 active)": lambda rng: trail.status_check(
            "user", user(rng)
        ),
        "tasks_for newest 50 (user)": lambda rng: tasks_for_newest(trail, "user", user(rng)),
        "list_tasks(status=failed, limit=50)": lambda rng: trail.list_tasks(
            status="failed", limit=50
        ),
        "events of one task": lambda rng: trail.events(task_id(rng.randint(1, n))),
        "reap_lost (nothing stale)": lambda rng: trail.store.reap_lost(3600),
        "due look (next_due, promote_due: nothing due)": lambda rng: (
            trail.store.next_due(),
            trail.store.promote_due(),
        ),
        "claim (rolled back)": claim,
        "status_check (project: 100 tasks, 8 active)": lambda rng: trail.status_check(
            "project", project(rng)
        ),
        "tasks_for newest 50 (project)": lambda rng: tasks_for_newest(
            trail, "project", project(rng)
        ),
    }


def tasks_for_newest(trail: Trail, resource_type: str, resource_id: str) -> object:
    """The newest 50 tasks of a resource, through ``Trail.tasks_for``."""
    try:
        return trail.tasks_for(resource_type, resource_id, limit=50)  # type: ignore[call-arg,unused-ignore]
    except TypeError:  # a tasktrail without ``limit``: everything, then the first 50
        return trail.tasks_for(resource_type, resource_id)[:50]


def timings(trail: Trail, n: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 in milliseconds of each query: the medians of ``BLOCKS`` blocks of
    ``SAMPLES`` calls, every query's block in turn, so that a spell of the machine's that
    slows one block does not make a query's figure."""
    rng = random.Random(11)
    runs = queries(trail, n)
    blocks: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(BLOCKS):
        for name, run in runs.items():
            blocks[name].append(block(run, rng))
    return {
        name: (
            statistics.median(p50 for p50, _ in figures),
            statistics.median(p99 for _, p99 in figures),
        )
        for name, figures in blocks.items()
    }


def block(run: Callable[[random.Random], object], rng: random.Random) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``SAMPLES`` calls of ``run``, after 10 to warm up."""
    for _ in range(10):
        run(rng)
    millis = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        run(rng)
        millis.append((time.perf_counter() - start) * 1e3)
    return statistics.median(millis), statistics.quantiles(millis, n=100)[98]


def measure(database: str, n: int) -> tuple[float, dict[str, tuple[float, float]]]:
    """A fresh database of ``database`` (``sqlite`` or ``postgresql``) with ``n`` tasks:
    the fill time and the query timings."""
    scratch = sqlite_database if database == "sqlite" else postgres_database
    with scratch() as url:
        trail = Trail(url, auto_migrate=True)
        try:
            seconds = fill(trail, n)
            return seconds, timings(trail, n)
        finally:
            trail.close()


def section(sizes: list[int], show: Callable[[list[str], list[list[str]]], str]) -> str:
    """Run every size on both databases; the Markdown section, a table per database."""
    from benchmarks.peers import report

    text = ["## Scale", "",
            f"p50 / p99 in ms: the medians of {BLOCKS} blocks of {SAMPLES:,} calls each "
            "(after 10 warm-up calls; each query's block in turn), one process, "
            "through the public API (the claim through the store's statement, rolled back). "
            "The last column divides the largest size's p99 by the smallest's: "
            "flat is ≤ 2."]  # fmt: skip
    for database in ("postgresql", "sqlite"):
        runs = {}
        for n in sizes:
            runs[n] = measure(database, n)
            print(f"{database} {n:,}: filled in {runs[n][0]:.1f}s", flush=True)
        names = list(next(iter(runs.values()))[1])
        first, last = min(runs), max(runs)
        headers = ["query", *(f"{n:,} p50 / p99" for n in runs), f"p99 {last:,} ÷ {first:,}"]
        rows = [
            [name, *(f"{runs[n][1][name][0]:.2f} / {runs[n][1][name][1]:.2f}" for n in runs),
             f"{runs[last][1][name][1] / runs[first][1][name][1]:.1f}"]
            for name in names
        ]  # fmt: skip
        fills = ", ".join(f"{n:,}: {runs[n][0]:.0f}s" for n in runs)
        text += ["", f"### {database}", "", f"Fill time: {fills}.", "", show(headers, rows)]
        chart = f"scale_{database}.png"
        report.grouped_chart(report.RESULTS / chart, f"Scale on {database}: p99 per query",
                             names, {f"{n:,}": [runs[n][1][m][1] for m in names] for n in runs},
                             "p99 ms (log)")  # fmt: skip
        text += ["", f"![scale {database}]({chart})"]
    return "\n".join(text)
