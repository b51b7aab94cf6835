"""``create_engine``: on PostgreSQL a pooled connection that sat unused is checked before
use, so a server that closed it (restart, idle timeout) costs the caller nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import PostgresDatabases

from tasktrail.store import create_engine


@pytest.fixture
def postgres_url(postgres: PostgresDatabases) -> Iterator[str]:
    name = postgres.create(migrated=False)
    try:
        yield postgres.url(name).render_as_string(hide_password=False)
    finally:
        postgres.drop(name)


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _terminate(postgres: PostgresDatabases, pid: int) -> None:
    with postgres.admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_connection_closed_by_the_server_while_idle_is_replaced(
    postgres: PostgresDatabases, postgres_url: str
) -> None:
    engine = create_engine(postgres_url, ping_after_idle=0.2, pool_size=1)
    try:
        first = _backend_pid(engine)
        _terminate(postgres, first)
        time.sleep(0.3)

        assert _backend_pid(engine) != first  # no error: checked, found closed, replaced
    finally:
        engine.dispose()


def test_without_the_check_the_caller_meets_the_closed_connection(
    postgres: PostgresDatabases, postgres_url: str
) -> None:
    engine = create_engine(postgres_url, ping_after_idle=None, pool_size=1)
    try:
        _terminate(postgres, _backend_pid(engine))
        time.sleep(0.3)

        with pytest.raises(sa.exc.OperationalError):
            _backend_pid(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(("after", "pings"), [(60.0, 0), (0.0, 2)])
def test_only_a_connection_idle_for_long_enough_is_checked(
    postgres_url: str, after: float, pings: int
) -> None:
    engine = create_engine(postgres_url, ping_after_idle=after, pool_size=1)
    ping = engine.dialect.do_ping
    pinged: list[object] = []

    def counted_ping(dbapi_connection: Any) -> bool:
        pinged.append(dbapi_connection)
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted_ping  # type: ignore[method-assign]
    try:
        for _ in range(3):  # the first checkout opens a new connection: never checked
            _backend_pid(engine)

        assert len(pinged) == pings
    finally:
        engine.dispose()


def test_every_session_reads_timestamps_in_utc(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                assert conn.exec_driver_sql("SHOW TimeZone").scalar_one() == "UTC"
                now = conn.exec_driver_sql("SELECT now()").scalar_one()
                assert now.tzinfo is UTC  # the driver's own, with nothing to convert
            first.rollback()  # the setting outlives a transaction rolled back
            assert first.exec_driver_sql("SHOW TimeZone").scalar_one() == "UTC"
    finally:
        engine.dispose()
