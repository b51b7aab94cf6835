"""A run keeps one connection for its statements on PostgreSQL (``Store.keep_connection``):
one checkout per run instead of one per write, returned when the run ends, replaced when
the server closed it, and never the pool's last; on SQLite nothing changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import PostgresDatabases
from tests.support.polling import eventually

from tasktrail import Status, TaskContext, TaskRecord, Trail
from tasktrail.runner import Runner
from tasktrail.store import create_engine
from tasktrail.store.engine import PING_AFTER_IDLE

STEPS = (25.0, 50.0, 75.0)


@contextmanager
def counted_checkouts(engine: sa.Engine) -> Iterator[list[object]]:
    """The connections the calling thread took from ``engine``'s pool within the block
    (not those of tasktrail's own threads: the event hints' listener, say)."""
    taken: list[object] = []
    caller = threading.get_ident()

    def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if threading.get_ident() == caller:
            taken.append(dbapi_connection)

    sa.event.listen(engine, "checkout", checkout)
    try:
        yield taken
    finally:
        sa.event.remove(engine, "checkout", checkout)


def claimed(trail: Trail, name: str) -> TaskRecord:
    """A new task of ``name``, claimed (as a worker's dispatch thread does)."""
    submitted = trail.submit(name)
    task = trail.store.claim(worker="test")
    assert task is not None and task.id == submitted.id
    return task


def run(trail: Trail, task: TaskRecord) -> TaskRecord:
    """Run ``task`` through the runner every executor uses; its record as it ended."""
    recorded = Runner(trail.store, trail.registry, worker="test").run(task)
    assert recorded is not None
    return recorded


def none_checked_out(trail: Trail) -> bool:
    """Whether none of ``trail``'s pooled connections is in use, waiting a moment for the
    event hints' thread, which opens its own connection through the pool (then detaches
    it) at its first hint, to be done with the pool."""
    pool = trail.engine.pool
    assert isinstance(pool, sa.QueuePool)
    return bool(eventually(lambda: pool.checkedout() == 0, timeout=5))


def progress_of(trail: Trail, task: TaskRecord) -> list[float | None]:
    """The progress of each of ``task``'s progress events, in order."""
    return [e.progress for e in trail.events(task_id=task.id) if e.type == "progress"]


def tracked(trail: Trail, during: Callable[[TaskContext], None] = lambda _: None) -> None:
    """Register ``tracked``: a progress report per step, stored every time, with
    ``during(ctx)`` after the first."""

    @trail.task("tracked", progress_interval=0)
    def _tracked(ctx: TaskContext) -> None:
        for number, percent in enumerate(STEPS):
            ctx.progress(percent)
            if number == 0:
                during(ctx)


def test_a_run_takes_one_connection_for_all_its_writes_on_postgresql(trail: Trail) -> None:
    tracked(trail)
    task = claimed(trail, "tracked")

    with counted_checkouts(trail.engine) as taken:
        ended = run(trail, task)

    assert ended.status is Status.COMPLETED
    assert progress_of(trail, task) == [*STEPS]
    if trail.engine.dialect.name == "postgresql":
        assert len(taken) == 1  # three progress reports and the end, on one connection
    else:
        assert len(taken) >= len(STEPS) + 1  # a write transaction each, as before
    assert none_checked_out(trail)  # given back when the run ended


def test_each_write_on_the_kept_connection_is_told_to_the_event_listeners(
    trail: Trail,
) -> None:
    tracked(trail)
    task = claimed(trail, "tracked")
    told: list[None] = []
    trail.store.on_events(lambda: told.append(None))

    run(trail, task)

    assert len(told) == len(STEPS) + 1


def test_a_kept_connection_the_server_closed_is_replaced_after_an_idle_spell(
    postgres: PostgresDatabases,
) -> None:
    name = postgres.create(migrated=True)
    trail = Trail(postgres.url(name).render_as_string(hide_password=False))

    def server_closes_every_connection(_ctx: TaskContext) -> None:
        postgres.close_connections(name)
        time.sleep(PING_AFTER_IDLE + 0.2)

    try:
        tracked(trail, during=server_closes_every_connection)
        task = claimed(trail, "tracked")

        ended = run(trail, task)

        assert ended.status is Status.COMPLETED  # the reports after it found a new one
        assert ended.progress == 100
        assert progress_of(trail, task) == [*STEPS]
    finally:
        trail.close()
        postgres.drop(name)


def test_a_write_on_a_connection_the_server_closed_raises_the_servers_error(
    postgres: PostgresDatabases,
) -> None:
    """The write fails with the driver's error, not with SQLAlchemy's complaint about the
    broken connection raised over it, and the next write finds a new connection."""
    name = postgres.create(migrated=True)
    trail = Trail(postgres.url(name).render_as_string(hide_password=False))
    try:
        tracked(trail)
        task = claimed(trail, "tracked")
        with trail.store.keep_connection():
            trail.store.record_progress(task.id, task.attempts, 10.0, None)
            postgres.close_connections(name)
            with pytest.raises(sa.exc.OperationalError, match="terminat"):
                trail.store.record_progress(task.id, task.attempts, 20.0, None)
            trail.store.record_progress(task.id, task.attempts, 30.0, None)
        assert progress_of(trail, task) == [10.0, 30.0]
    finally:
        trail.close()
        postgres.drop(name)


def test_a_pool_of_one_is_never_kept_from_the_other_threads(
    postgres: PostgresDatabases,
) -> None:
    name = postgres.create(migrated=True)
    url = postgres.url(name).render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=2)
    trail = Trail(engine=engine)
    seen: list[TaskRecord] = []

    def another_thread_reads(ctx: TaskContext) -> None:
        reader = threading.Thread(target=lambda: seen.append(trail.get(ctx.task_id)))
        reader.start()
        reader.join()

    try:
        tracked(trail, during=another_thread_reads)
        task = claimed(trail, "tracked")

        with counted_checkouts(engine) as taken:
            ended = run(trail, task)

        assert ended.status is Status.COMPLETED
        assert [record.id for record in seen] == [task.id]  # no pool timeout
        assert len(taken) > 2  # the run took the one connection per write
    finally:
        trail.close()
        engine.dispose()
        postgres.drop(name)


def test_threads_keeping_connections_at_once_each_run_on_their_own(trail: Trail) -> None:
    threads = 4  # as many as the pool of 5 lets keep one
    tracked(trail)
    tasks = [claimed(trail, "tracked") for _ in range(threads)]
    ended: list[TaskRecord] = []
    start = threading.Barrier(threads)

    def run_one(task: TaskRecord) -> None:
        start.wait()
        ended.append(run(trail, task))

    runners = [threading.Thread(target=run_one, args=(task,)) for task in tasks]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()

    assert sorted(t.id for t in ended) == sorted(t.id for t in tasks)
    assert all(t.status is Status.COMPLETED and t.progress == 100 for t in ended)
    assert none_checked_out(trail)
