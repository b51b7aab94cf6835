"""Migrations: up from empty, down to empty, up again; and they build exactly schema.py."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tasktrail import SchemaNotReady, Trail
from tasktrail.schema import metadata
from tasktrail.store import create_engine
from tasktrail.store.migrate import (
    VERSION_TABLE,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)

TABLES = {"tasktrail_tasks", "tasktrail_links", "tasktrail_events", "tasktrail_items"}


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    assert current_revision(engine) is None

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert TABLES | {VERSION_TABLE} <= _tables(engine)

    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert not _tables(engine) & (TABLES | {VERSION_TABLE})

    upgrade(engine)
    assert _tables(engine) >= TABLES
    engine.dispose()


def test_the_migrated_schema_is_exactly_the_metadata(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _: kind != "table" or name in TABLES,
            },
        )
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_the_application_tables_and_alembic_history_are_left_alone(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('app_rev_42')")
    upgrade(engine)
    downgrade(engine, "base")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            "app_rev_42"
        )
    engine.dispose()


def test_a_trail_refuses_an_unmigrated_database_unless_allowed(empty_database_url: str) -> None:
    if empty_database_url.startswith("sqlite"):
        Trail(empty_database_url).close()  # the embedded default migrates itself
        return
    with pytest.raises(SchemaNotReady, match="tasktrail db upgrade"):
        Trail(empty_database_url)
    Trail(empty_database_url, auto_migrate=True).close()


def test_0002_marks_the_links_of_active_tasks_active(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    upgrade(engine, "0001")
    old_tasks = sa.table(
        "tasktrail_tasks",
        *(sa.column(name) for name in ("id", "name", "params", "status", "created_at")),
        sa.column("updated_at"),
    )
    old_links = sa.table(
        "tasktrail_links",
        *(sa.column(name) for name in ("task_id", "resource_type", "resource_id")),
        sa.column("created_at"),
    )
    now = sa.text("'2026-11-24 12:00:00'")  # a literal each database reads as its time type
    with engine.begin() as conn:
        for task_id, status in (("t-running", "running"), ("t-done", "completed")):
            conn.execute(
                sa.insert(old_tasks).values(
                    id=task_id,
                    name="n",
                    params=sa.text("'{}'"),
                    status=status,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                sa.insert(old_links).values(
                    task_id=task_id,
                    resource_type="roadmap",
                    resource_id="r1",
                    created_at=now,
                )
            )

    upgrade(engine)

    trail = Trail(engine=engine)
    assert [t.id for t in trail.tasks_for("roadmap", "r1", active=True)] == ["t-running"]
    assert [t.id for t in trail.tasks_for("roadmap", "r1", active=False)] == ["t-done"]
    engine.dispose()
