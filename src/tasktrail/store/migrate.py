"""Schema migrations: Alembic, run on tasktrail's own version table.

The version table is ``tasktrail_alembic_version``, so an application's own Alembic history
in the same database is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from tasktrail.errors import SchemaNotReady
from tasktrail.store.engine import begin_writing

VERSION_TABLE = "tasktrail_alembic_version"
# Any fixed 64-bit number: serialises concurrent upgrades on one PostgreSQL database.
_ADVISORY_LOCK_ID = 0x7461736B747261


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "tasktrail:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of tasktrail ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, begin_writing(conn):
        if engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_ID)))
        yield conn


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``; safe when several processes do it at once."""
    with _migrating(engine) as conn:
        command.upgrade(_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` removes every tasktrail table)."""
    with _migrating(engine) as conn:
        command.downgrade(_config(conn), revision)
        if revision == "base":
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when tasktrail's tables are absent."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Make sure the schema is at head: migrate when allowed, else explain what to run."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if auto_migrate:
        upgrade(engine)
        return
    state = "has no tasktrail tables" if current is None else f"is at revision {current}"
    raise SchemaNotReady(
        f"the database {state}, this tasktrail needs {head}: run `tasktrail db upgrade` "
        "(or pass auto_migrate=True)"
    )
