"""``watch``: a SQLite file's commits heard from other connections and processes, which is
how workers and the event feed hear other processes on SQLite."""

from __future__ import annotations

import queue
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tasktrail.store import create_engine
from tasktrail.store.watch import CommitWatcher, can_watch, watch_commits


@pytest.fixture
def sqlite_file(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "watched.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.commit()
    conn.close()
    return f"sqlite:///{path}", path


def heard_once_more(heard: queue.SimpleQueue[None]) -> None:
    heard.get(timeout=5)


def test_hears_a_commit_from_another_process_and_nothing_else(
    sqlite_file: tuple[str, Path],
) -> None:
    url, path = sqlite_file
    engine = create_engine(url)
    heard: queue.SimpleQueue[None] = queue.SimpleQueue()
    watcher = watch_commits(engine, lambda: heard.put(None))
    assert watcher is not None
    try:
        heard_once_more(heard)  # the first look: whatever committed before
        # Reads, and a transaction rolled back, change nothing: nothing is heard.
        with sqlite3.connect(path) as other:
            other.execute("SELECT count(*) FROM t").fetchone()
        rolled_back = sqlite3.connect(path)
        rolled_back.execute("INSERT INTO t VALUES (0)")
        rolled_back.rollback()
        rolled_back.close()
        with pytest.raises(queue.Empty):
            heard.get(timeout=0.3)

        code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        code += "c.execute('INSERT INTO t VALUES (1)'); c.commit()"
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
        heard_once_more(heard)
    finally:
        watcher.close()
        engine.dispose()


def test_a_burst_of_commits_between_two_looks_is_heard_once(sqlite_file: tuple[str, Path]) -> None:
    url, path = sqlite_file
    engine = create_engine(url)
    heard: queue.SimpleQueue[None] = queue.SimpleQueue()
    # Looks far apart, so that the burst surely falls between two of them.
    watcher = CommitWatcher(lambda: _connect(path), lambda: heard.put(None), interval=1.0)
    assert watcher.start()
    try:
        heard_once_more(heard)
        with sqlite3.connect(path) as other:
            for n in range(50):
                other.execute("INSERT INTO t VALUES (?)", (n,))
                other.commit()
        heard.get(timeout=5)
        with pytest.raises(queue.Empty):
            heard.get(timeout=1.5)
    finally:
        watcher.close(timeout=3)
        engine.dispose()


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def test_close_stops_the_thread_and_closes_its_connection(sqlite_file: tuple[str, Path]) -> None:
    _, path = sqlite_file
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        opened.append(_connect(path))
        return opened[-1]

    watcher = CommitWatcher(connect, lambda: None)
    assert watcher.start()
    watcher.close()

    assert not watcher._thread.is_alive()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")


def test_only_a_sqlite_file_can_be_watched(database_url: str) -> None:
    memory = create_engine("sqlite://")
    shared_memory = create_engine("sqlite:///file:mem?mode=memory&cache=shared&uri=true")
    engine = create_engine(database_url)
    try:
        assert not can_watch(memory)
        assert not can_watch(shared_memory)
        assert watch_commits(memory, lambda: None) is None
        assert can_watch(engine) == database_url.startswith("sqlite")
    finally:
        for each in (memory, shared_memory, engine):
            each.dispose()
