"""The Procrastinate app of the comparison: the same tracked lifecycle as tasktrail's
``bench.tracked``, with progress kept the way Procrastinate documents custom state — rows
the task inserts into a table of its own (``bench_progress``), each committed at once.

Loaded by ``procrastinate --app benchmarks.peers.proc_app.app worker``; the database comes
from ``BENCH_PROCRASTINATE_DSN`` (a libpq conninfo or URL).
"""

from __future__ import annotations

import os

from procrastinate import App, JobContext, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_DSN", "")))

PROGRESS_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_progress ("
    " id bigserial PRIMARY KEY, job_id bigint NOT NULL, percent real NOT NULL,"
    " step text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
)
STEPS = (("one", 33.0), ("two", 66.0), ("three", 100.0))


@app.task(name="bench.tracked", pass_context=True)  # type: ignore[untyped-decorator,unused-ignore]
async def tracked(context: JobContext) -> None:
    """A no-op that stores three progress rows (one committed INSERT each), then completes."""
    job_id = context.job.id
    for step, percent in STEPS:
        await context.app.connector.execute_query_async(
            "INSERT INTO bench_progress (job_id, percent, step)"
            " VALUES (%(job_id)s, %(percent)s, %(step)s)",
            job_id=job_id,
            percent=percent,
            step=step,
        )
