"""The store's writes on the driver (``store/driver.py``), on SQLite and PostgreSQL: they
store exactly what SQLAlchemy's execution stores, raise SQLAlchemy's errors, give up a
connection the server closed as SQLAlchemy does, and step aside for anyone watching the
engine's statements."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import BACKENDS, POSTGRES_URL, PostgresDatabases

from tasktrail import Link, Status, TaskContext, Trail
from tasktrail.runner import NextClaim, Runner
from tasktrail.schema import metadata, tasks
from tasktrail.store import driver
from tasktrail.store import statements as q
from tasktrail.store.migrate import head_revision

MOMENT = datetime(2026, 12, 6, 9, 30, 15, 123456, tzinfo=UTC)


def _trail(url: str, *, watched: bool) -> Trail:
    trail = Trail(url, auto_migrate=True)
    trail.store.clock = lambda: MOMENT
    if watched:  # a listener of statement events: SQLAlchemy's execution for every write
        sa.event.listen(trail.engine, "before_cursor_execute", lambda *_: None)

    @trail.task("d.report")
    def report(ctx: TaskContext, fail: bool = False) -> dict[str, Any]:
        ctx.progress(40, "halfway")
        ctx.progress(80, None)
        if fail:
            raise RuntimeError("stopped on purpose")
        return {"ok": [1, "two", None], "at": 3.5}

    return trail


@pytest.fixture(params=BACKENDS)
def two_database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """Two fresh databases of each backend."""
    if request.param == "sqlite":
        yield [f"sqlite:///{tmp_path}/first.db", f"sqlite:///{tmp_path}/second.db"]
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    names = [databases.create(migrated=True) for _ in range(2)]
    try:
        yield [databases.url(name).render_as_string(hide_password=False) for name in names]
    finally:
        for name in names:
            databases.drop(name)


def _a_working_life(trail: Trail) -> list[str]:
    """Two tasks run the worker's way: the first completes and claims the second in the
    same write, which fails; a third is cancelled while queued. The three ids."""
    first = trail.submit("d.report", links=[Link("doc", "d1", role="source"), Link("user", "u1")])
    second = trail.submit("d.report", {"fail": True}, links=[Link("doc", "d1")])
    runner = Runner(trail.store, trail.registry, worker="w", progress_interval=0)
    task = trail.store.claim(worker="w")
    claim = NextClaim(queues=None, names=["d.report"])
    while task is not None:
        _, task = runner.run_then_claim(task, claim)
    queued = trail.submit("d.report")
    trail.cancel(queued.id)
    return [first.id, second.id, queued.id]


def _stored(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tasks, links and events tables as the database holds it, read
    without tasktrail, task ids replaced by their order of submission (of their first
    event), rows sorted."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        ids = conn.execute(
            sa.text("SELECT task_id FROM tasktrail_events GROUP BY task_id ORDER BY min(id)")
        ).scalars()
        number = {task_id: index for index, task_id in enumerate(ids)}
        stored = {}
        for table in ("tasktrail_tasks", "tasktrail_links", "tasktrail_events"):
            result = conn.execute(sa.text(f"SELECT * FROM {table}"))
            columns = list(result.keys())
            rows = [
                tuple(
                    number[value] if name in ("id", "task_id") and value in number else value
                    for name, value in zip(columns, row, strict=True)
                )
                for row in result
            ]
            stored[table] = sorted(rows, key=repr)
    engine.dispose()
    return stored


def test_the_driver_stores_what_sqlalchemy_stores(two_database_urls: list[str]) -> None:
    lives = {}
    for watched, url in zip((False, True), two_database_urls, strict=True):
        trail = _trail(url, watched=watched)
        with trail.engine.connect() as conn:
            assert driver.direct(conn) is not watched
        _a_working_life(trail)
        trail.close()
        lives[watched] = _stored(url)

    direct, through_sqlalchemy = lives[False], lives[True]
    assert len(direct["tasktrail_events"]) == 12  # 3 submits, 2 claims, 4 reports, 3 ends
    assert direct == through_sqlalchemy


def test_a_task_read_back_after_driver_writes_has_its_values_and_types(
    database_url: str,
) -> None:
    trail = _trail(database_url, watched=False)
    done, failed, cancelled = (trail.get(task_id) for task_id in _a_working_life(trail))
    assert done.result == {"ok": [1, "two", None], "at": 3.5}
    assert (done.progress, done.current_step) == (100.0, None)
    assert type(done.progress) is float and type(done.attempts) is int
    assert done.completed_at == MOMENT and done.started_at == MOMENT
    assert done.completed_at.tzinfo is not None
    assert failed.status is Status.FAILED and "stopped on purpose" in (failed.error or "")
    assert cancelled.status is Status.CANCELLED
    assert not trail.store.has_active_task("doc", "d1")
    steps = [(e.type, e.progress, e.step) for e in trail.events(done.id)]
    assert ("progress", 40.0, "halfway") in steps and ("progress", 80.0, None) in steps
    trail.close()


def test_a_write_returns_its_rows_converted_as_sqlalchemy_converts_them(trail: Trail) -> None:
    trail.task("d.noop")(lambda ctx, n: None)
    submitted = trail.submit("d.noop", {"n": 1})
    claimed = trail.store.claim(worker="w")

    assert claimed is not None and claimed.id == submitted.id
    assert claimed.params == {"n": 1} and claimed.status is Status.RUNNING
    assert claimed.started_at is not None and claimed.started_at.utcoffset() is not None
    assert claimed.progress == 0.0 and type(claimed.progress) is float


def test_an_error_of_the_driver_is_sqlalchemys_and_the_transaction_rolls_back(
    database_url: str,
) -> None:
    trail = _trail(database_url, watched=False)
    orphan = q.insert_event(task_id="no-such-task", type="progress", now=MOMENT)
    compiled = driver.compiled_for_driver(orphan.statement, trail.engine.dialect)
    assert compiled is not None

    def submit_then_write_an_orphan_event() -> None:
        with trail.store.writing() as conn:
            trail.submit("d.report", using=conn)
            driver.execute(conn, compiled, compiled.parameters(orphan.params))

    with pytest.raises(sa.exc.IntegrityError, match=r"(?i)foreign key"):
        submit_then_write_an_orphan_event()

    assert trail.list_tasks().items == ()  # the submit in the same transaction is gone too
    trail.close()


@pytest.mark.parametrize("watched", [False, True], ids=["driver", "sqlalchemy"])
def test_a_connection_the_server_closed_fails_one_write_then_is_replaced(
    postgres: PostgresDatabases, watched: bool
) -> None:
    name = postgres.create(migrated=True)
    trail = _trail(postgres.url(name).render_as_string(hide_password=False), watched=watched)
    try:
        trail.submit("d.report")
        task = trail.store.claim(worker="w")
        assert task is not None
        with trail.store.keep_connection():
            trail.store.record_progress(task.id, task.attempts, 10, "before")
            postgres.close_connections(name)

            # The write on the lost connection fails, as SQLAlchemy's own execution does;
            # the next one takes a new connection, in autocommit mode like the first.
            with pytest.raises(sa.exc.SQLAlchemyError):
                trail.store.record_progress(task.id, task.attempts, 20, "lost")
            trail.store.record_progress(task.id, task.attempts, 30, "after")

        steps = [e.step for e in trail.events(task.id) if e.type == "progress"]
        assert steps == ["before", "after"]
    finally:
        trail.close()
        postgres.drop(name)


def test_a_statement_sqlalchemy_must_finish_at_each_execution_is_left_to_it(
    trail: Trail,
) -> None:
    expanding = sa.select(tasks.c.id).where(tasks.c.id.in_(sa.bindparam("ids", expanding=True)))
    assert driver.compiled_for_driver(expanding, trail.engine.dialect) is None


def test_an_engine_that_puts_the_tables_in_another_schema_takes_sqlalchemys_way(
    postgres: PostgresDatabases,
) -> None:
    name = postgres.create(migrated=False)
    url = postgres.url(name).render_as_string(hide_password=False)
    base = sa.create_engine(url, poolclass=sa.NullPool)
    with base.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA tenant")
    tenant = base.execution_options(schema_translate_map={None: "tenant"})
    # tasktrail's migrations write some of their DDL as text, which no map translates: the
    # tenant's tables come from the metadata, and Alembic's version table says they are at
    # the migrations' head (in both schemas: Alembic looks for it untranslated, then reads
    # it translated).
    metadata.create_all(tenant)
    with base.begin() as conn:
        for schema in ("public", "tenant"):
            conn.exec_driver_sql(
                f"CREATE TABLE {schema}.tasktrail_alembic_version (version_num text)"
            )
            conn.execute(
                sa.text(f"INSERT INTO {schema}.tasktrail_alembic_version VALUES (:head)"),
                {"head": head_revision()},
            )
    try:
        trail = Trail(engine=tenant)
        trail.task("d.noop")(lambda ctx: None)
        trail.submit("d.noop")
        task = trail.store.claim(worker="w")
        assert task is not None
        trail.store.record_progress(task.id, task.attempts, 50, "in the tenant's tables")

        with tenant.connect() as conn:
            assert not driver.direct(conn)
        assert [e.step for e in trail.events(task.id) if e.type == "progress"] == [
            "in the tenant's tables"
        ]
        with base.connect() as conn:
            in_tenant = conn.exec_driver_sql("SELECT count(*) FROM tenant.tasktrail_events")
            assert in_tenant.scalar() == 3  # submitted, claimed, the report
            public = conn.exec_driver_sql("SELECT to_regclass('public.tasktrail_events')")
            assert public.scalar() is None
        trail.close()
    finally:
        base.dispose()
        postgres.drop(name)


def test_echo_listeners_and_async_drivers_take_sqlalchemys_way(tmp_path: Path) -> None:
    echoing = sa.create_engine(f"sqlite:///{tmp_path}/echo.db", echo=True)
    with echoing.connect() as conn:
        assert not driver.direct(conn)
    echoing.dispose()
    executing_its_way = sa.create_engine(f"sqlite:///{tmp_path}/do.db")
    sa.event.listen(executing_its_way, "do_execute", lambda *_: False)
    with executing_its_way.connect() as conn:
        assert not driver.direct(conn)
    executing_its_way.dispose()

    async def direct_under(url: str) -> bool:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            direct: bool = await conn.run_sync(driver.direct)
        await engine.dispose()
        return direct

    assert asyncio.run(direct_under(f"sqlite+aiosqlite:///{tmp_path}/async.db")) is False
    assert asyncio.run(direct_under(POSTGRES_URL)) is False  # psycopg's async connection
