"""Event hints on PostgreSQL: listeners of the events channel hear that events committed —
after the store's own commits through ``EventHints`` (coalesced), and with the caller's
transaction when a write joined it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from tests.conftest import PostgresDatabases

from tasktrail import Trail
from tasktrail.store.channels import EVENTS_CHANNEL
from tasktrail.store.hints import EventHints
from tasktrail.store.listen import connector


@pytest.fixture
def pg_trail(postgres: PostgresDatabases) -> Iterator[Trail]:
    name = postgres.create(migrated=True)
    trail = Trail(postgres.url(name).render_as_string(hide_password=False))

    @trail.task("hints.noop")
    def noop(ctx: object) -> None:
        return None

    yield trail
    trail.close()
    postgres.drop(name)


@pytest.fixture
def listening(pg_trail: Trail) -> Iterator[psycopg.Connection[object]]:
    conn = connector(pg_trail.engine)()
    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
    yield conn
    conn.close()


def _heard(conn: psycopg.Connection[object], wait: float) -> int:
    return sum(1 for _ in conn.notifies(timeout=wait))


def test_a_commit_of_the_store_is_hinted_after_it(
    pg_trail: Trail, listening: psycopg.Connection[object]
) -> None:
    pg_trail.submit("hints.noop", run=False)

    assert _heard(listening, 2.0) >= 1


def test_commits_made_while_a_hint_is_in_flight_share_the_next(
    pg_trail: Trail, listening: psycopg.Connection[object]
) -> None:
    def submit_many() -> None:
        for _ in range(50):
            pg_trail.submit("hints.noop", run=False)

    threads = [threading.Thread(target=submit_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hints = pg_trail.store._hints
    assert hints is not None and hints.flush(timeout=5)

    heard = _heard(listening, 1.0)
    assert 1 <= heard < 200  # every commit covered (flush), by far fewer NOTIFYs


def test_a_write_in_the_callers_transaction_is_heard_only_when_it_commits(
    pg_trail: Trail, listening: psycopg.Connection[object]
) -> None:
    with pg_trail.engine.connect() as conn:
        with conn.begin():
            pg_trail.submit("hints.noop", run=False, using=conn)
            assert _heard(listening, 0.5) == 0
        assert _heard(listening, 2.0) >= 1


def test_hints_stop_when_idle_and_start_again(
    postgres: PostgresDatabases, pg_trail: Trail, listening: psycopg.Connection[object]
) -> None:
    hints = EventHints(connector(pg_trail.engine), idle=0.2)
    hints.committed()
    assert hints.flush(timeout=5)
    deadline = time.monotonic() + 5
    while hints._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hints._thread is None
    assert _heard(listening, 1.0) == 1

    hints.committed()

    assert hints.flush(timeout=5)
    assert _heard(listening, 2.0) == 1
