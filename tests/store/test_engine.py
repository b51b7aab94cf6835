"""``create_engine``: on PostgreSQL a pooled connection that sat unused is checked before
use, so a server that closed it (restart, idle timeout) costs the caller nothing; on SQLite
transactions are the database's own, a write transaction takes the lock at its start, and
the log is checkpointed every ``SQLITE_CHECKPOINT_PAGES`` pages; JSON from PostgreSQL's
driver is decoded as ``json.loads`` decodes it, unless the caller gives a decoder; and no
engine makes SQLAlchemy dispatch connection events."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import PostgresDatabases

from tasktrail import Trail
from tasktrail.store import create_engine
from tasktrail.store.engine import SQLITE_CHECKPOINT_PAGES, begin_writing, json_from_driver


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


DOCUMENTS = [
    "{}",
    "[]",
    "null",
    '{"a": [1, 2.5, -3e-7, true, false, null], "b": {"c": "d"}}',
    '{"unicode": "Zürich, 東京 🎉", "escaped": "\\u00e9\\ud83c\\udf89\\n\\t\\""}',
    '{"big": 12345678901234567890, "small": -0.000001}',
    '"a string alone"',
    ' \n {"padded": [1, 2]}\t ',  # the json type keeps a document's text as written
    '[[1, "a"], \n [2, "b"]]',
]
NOT_JSON = ["", " ", "{", '{"a": 1} x', "[1,]", "nul", "\ud800"]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_json_from_the_driver_is_what_json_loads_gives(document: str) -> None:
    assert json_from_driver(document.encode()) == json.loads(document)
    assert json_from_driver(document) == json.loads(document)


@pytest.mark.parametrize("text", NOT_JSON)
def test_what_json_loads_refuses_the_driver_s_decoder_refuses_alike(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as loads_error:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as driver_error:
        json_from_driver(text.encode("utf-8", "surrogatepass"))
    assert str(driver_error.value) == str(loads_error.value)


def test_json_columns_read_back_as_json_loads_reads_them(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            for document in DOCUMENTS:
                for type_ in ("json", "jsonb"):
                    read = conn.exec_driver_sql(
                        f"SELECT CAST(%(doc)s AS {type_})", {"doc": document}
                    ).scalar_one()
                    assert read == json.loads(document), (type_, document)
    finally:
        engine.dispose()


def test_a_json_deserializer_given_to_create_engine_is_kept(postgres_url: str) -> None:
    seen: list[bytes] = []

    def tagging(data: bytes) -> Any:
        seen.append(data)
        return {"read by": "the caller's", **json.loads(data)}

    engine = create_engine(postgres_url, json_deserializer=tagging)
    try:
        with engine.connect() as conn:
            read = conn.exec_driver_sql("""SELECT '{"a": 1}'::jsonb""").scalar_one()
        assert read == {"read by": "the caller's", "a": 1}
        assert seen == [b'{"a": 1}']
    finally:
        engine.dispose()


def test_no_engine_of_tasktrail_listens_to_connection_events(database_url: str) -> None:
    """SQLAlchemy dispatches the events of every statement of every connection of an engine
    that has a connection-event listener: tasktrail's engines have none, and using the
    engine (a submit, a run) adds none."""
    trail = Trail(database_url)
    trail.task("engine.noop")(lambda ctx: None)
    try:
        trail.submit("engine.noop")
        assert trail.run_pending() == 1
        assert not trail.engine._has_events  # what SQLAlchemy checks before each dispatch
    finally:
        trail.close()


def test_a_sqlite_transaction_reads_one_snapshot_and_rolls_back_whole(tmp_path: Path) -> None:
    """pysqlite begins no transaction before a SELECT; tasktrail's engine does."""
    engine = create_engine(f"sqlite:///{tmp_path / 'snap.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with engine.connect() as reader, engine.connect() as writer:
            with reader.begin():
                assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
                with writer.begin():
                    writer.exec_driver_sql("INSERT INTO t VALUES (2)")
                assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
            with writer.begin() as transaction:
                writer.exec_driver_sql("INSERT INTO t VALUES (3)")
                writer.exec_driver_sql("INSERT INTO t VALUES (4)")
                transaction.rollback()
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    finally:
        engine.dispose()


def test_a_sqlite_write_transaction_holds_the_write_lock_from_its_start(tmp_path: Path) -> None:
    """``begin_writing`` takes the lock before any statement: another writer cannot get in
    between a read and the write that follows it."""
    path = tmp_path / "lock.db"
    engine = create_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with (
            engine.connect() as conn,
            begin_writing(conn),
            pytest.raises(sqlite3.OperationalError, match="locked"),
        ):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once it ended
        other.rollback()
        with engine.connect() as conn, conn.begin():
            other.execute("BEGIN IMMEDIATE")  # a plain transaction takes no lock until it writes
            other.rollback()
    finally:
        other.close()
        engine.dispose()


def _log_frames(path: Path, page_size: int) -> int:
    """How many frames a SQLite file's write-ahead log has held at most: its file is reused
    from the start after a checkpoint, not shrunk (a 32-byte header, then per frame a
    24-byte header and a page)."""
    wal = path.with_name(path.name + "-wal")
    return (wal.stat().st_size - 32) // (24 + page_size)


def test_a_sqlite_log_is_checkpointed_every_sqlite_checkpoint_pages(tmp_path: Path) -> None:
    """A commit that takes the log past ``SQLITE_CHECKPOINT_PAGES`` pages (not SQLite's
    1,000) copies it into the database, and the log starts again from its beginning."""
    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            conn.exec_driver_sql("CREATE TABLE counter (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO counter VALUES (0)")

        def commit_one_page(times: int) -> None:
            for _ in range(times):  # each rewrites the table's one page: one frame
                with engine.connect() as conn, begin_writing(conn):
                    conn.exec_driver_sql("UPDATE counter SET n = n + 1")

        commit_one_page(1_500)
        assert _log_frames(path, page_size) >= 1_500  # not checkpointed at 1,000
        commit_one_page(SQLITE_CHECKPOINT_PAGES + 1_000 - 1_500)
        frames = _log_frames(path, page_size)
        assert SQLITE_CHECKPOINT_PAGES <= frames < SQLITE_CHECKPOINT_PAGES + 10
    finally:
        engine.dispose()
