"""Scratch databases for a benchmark run, and the baseline: how many single-row committed
UPDATEs per second the database itself manages from one connection."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from tasktrail.store import create_engine

POSTGRES_URL = os.environ.get(
    "TASKTRAIL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def sqlite_database() -> Iterator[str]:
    """A fresh SQLite file, deleted afterwards."""
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{Path(directory) / 'bench.db'}"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"tasktrail_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def committed_updates_per_second(url: str, *, seconds: float = 2.0) -> float:
    """Single-row UPDATEs, each in its own committed transaction, one after another."""
    engine = create_engine(url)
    counter = sa.table("bench_counter", sa.column("id", sa.Integer), sa.column("n", sa.Integer))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE bench_counter (id INTEGER PRIMARY KEY, n INTEGER)")
            conn.execute(sa.insert(counter).values(id=1, n=0))
        bump = sa.update(counter).where(counter.c.id == 1).values(n=counter.c.n + 1)
        done = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            with engine.begin() as conn:
                conn.execute(bump)
            done += 1
        return done / elapsed
    finally:
        engine.dispose()
