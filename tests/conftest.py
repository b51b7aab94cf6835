"""Fixtures shared by the whole suite.

Every test that touches a database takes ``database_url`` (or ``trail``) and so runs twice:
on a fresh SQLite file and on a fresh PostgreSQL database. PostgreSQL databases are cloned
from a migrated template, which is much faster than migrating each one.

PostgreSQL comes from ``TASKTRAIL_TEST_POSTGRES_URL``. When it is unreachable the run
fails, unless ``TASKTRAIL_SKIP_SERVICES=1`` is set (for a newcomer without PostgreSQL).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from tasktrail import Trail
from tasktrail.store import create_engine
from tasktrail.store.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "TASKTRAIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SKIP_SERVICES = os.environ.get("TASKTRAIL_SKIP_SERVICES") == "1"
BACKENDS = ["sqlite", "postgresql"]


def _admin_engine() -> sa.Engine:
    return create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def service_missing(what: str, error: Exception) -> None:
    """Fail (or, with TASKTRAIL_SKIP_SERVICES=1, skip) a test that needs a service."""
    message = f"{what} is not reachable ({error}); start it, or set TASKTRAIL_SKIP_SERVICES=1"
    if SKIP_SERVICES:
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


class PostgresDatabases:
    """Creates and drops throwaway PostgreSQL databases."""

    def __init__(self) -> None:
        self.admin = _admin_engine()
        self.base = make_url(POSTGRES_URL)
        self.template: str | None = None

    def url(self, name: str) -> URL:
        return self.base.set(database=name)

    def create(self, *, migrated: bool) -> str:
        name = f"tasktrail_test_{uuid.uuid4().hex[:12]}"
        if migrated:
            template = self._template()
            self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            self._execute(f'CREATE DATABASE "{name}"')
        return name

    def drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close_connections(self, name: str) -> None:
        """Make the server close every connection to database ``name`` (as a restart or
        an idle timeout would), but the one that asks."""
        with self.admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )

    def _template(self) -> str:
        if self.template is None:
            name = f"tasktrail_template_{uuid.uuid4().hex[:12]}"
            self._execute(f'CREATE DATABASE "{name}"')
            engine = create_engine(self.url(name), poolclass=sa.NullPool)
            upgrade(engine)
            engine.dispose()
            self.template = name
        return self.template

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(sql)

    def close(self) -> None:
        if self.template is not None:
            self.drop(self.template)
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    try:
        databases = PostgresDatabases()
        databases._execute("SELECT 1")
    except Exception as exc:  # any driver or connection error means: no usable server
        service_missing(f"PostgreSQL at {POSTGRES_URL}", exc)
    yield databases
    databases.close()


def _database(request: pytest.FixtureRequest, tmp_path: object, *, migrated: bool) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/tasktrail.db"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    name = databases.create(migrated=migrated)
    try:
        yield databases.url(name).render_as_string(hide_password=False)
    finally:
        databases.drop(name)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A fresh, migrated database on each backend."""
    yield from _database(request, tmp_path, migrated=True)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """A fresh database with no tables, on each backend."""
    yield from _database(request, tmp_path, migrated=False)


@pytest.fixture
def trail(database_url: str) -> Iterator[Trail]:
    """A ``Trail`` on a fresh database of each backend."""
    instance = Trail(database_url, auto_migrate=True)
    yield instance
    instance.close()
