"""``bell``: a process that queues a task on a SQLite file wakes the watchers of that file in
other processes at once, instead of at their next poll."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasktrail import Trail
from tasktrail.store.bell import Bell, _remove_own_sockets, bell_for
from tasktrail.store.watch import CommitWatcher

#: Far longer than any test waits: whatever a watcher hears comes from the bell.
NEVER = 600.0


def _bell(database: Path) -> Bell:
    bell = bell_for(str(database))
    assert bell is not None
    return bell


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "app.db"
    Trail(f"sqlite:///{path}", auto_migrate=True).close()
    yield path
    assert not _bell(path).directory.exists()  # its last listener removed it


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_ring_wakes_every_listener_of_the_file_and_no_other(
    database: Path, tmp_path: Path
) -> None:
    bell = _bell(database)
    first, second = bell.listen(), bell.listen()
    elsewhere = _bell(tmp_path / "other.db").listen()
    assert first and second and elsewhere
    try:
        assert not first.wait(0)
        bell.ring()
        bell.ring()
        assert first.wait(5) and second.wait(5)
        assert not first.wait(0)  # the two rings were answered by one wake
        assert not elsewhere.wait(0.2)
    finally:
        for listener in (first, second, elsewhere):
            listener.close()
    assert not first.path.exists() and not bell.directory.exists()


def test_a_ring_reaches_a_listener_in_another_process(database: Path) -> None:
    child = _python(
        """
        import sys
        from tasktrail.store.bell import bell_for
        listener = bell_for(sys.argv[1]).listen()
        print("listening", flush=True)
        print("rung" if listener.wait(60) else "not rung", flush=True)
        listener.close()
        """,
        str(database),
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "listening"
    _bell(database).ring()
    out, _ = child.communicate(timeout=60)
    assert out.strip() == "rung"


def test_the_socket_of_a_killed_process_is_removed_by_the_next_ring(database: Path) -> None:
    bell = _bell(database)
    child = _python(
        """
        import sys, time
        from tasktrail.store.bell import bell_for
        listener = bell_for(sys.argv[1]).listen()
        print(listener.path, flush=True)
        time.sleep(600)
        """,
        str(database),
    )
    assert child.stdout is not None
    left = Path(child.stdout.readline().strip())
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)
    assert left.exists()  # nobody closed it

    bell.ring()

    assert not left.exists()


def test_a_process_that_exits_without_closing_its_listener_removes_its_socket(
    database: Path,
) -> None:
    child = _python(
        """
        import sys
        from tasktrail.store.bell import bell_for
        listener = bell_for(sys.argv[1]).listen()
        print(listener.path, flush=True)
        """,
        str(database),
    )
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert not Path(out.strip()).exists()


def test_a_forked_child_leaves_its_parent_s_socket_alone(database: Path) -> None:
    listener = _bell(database).listen()
    assert listener is not None
    pid = os.fork()
    if pid == 0:  # the child: what it does with what it inherited, then its exit
        listener.close()
        _remove_own_sockets()
        os._exit(0)
    os.waitpid(pid, 0)
    try:
        assert listener.path.exists()
    finally:
        listener.close()


def test_nobody_listens_where_the_directory_is_not_one(database: Path) -> None:
    bell = _bell(database)
    bell.directory.write_text("someone else's file")
    try:
        assert bell.listen() is None
        bell.ring()  # rings nobody, raises nothing
    finally:
        bell.directory.unlink()


def _watching(database: Path, heard: queue.SimpleQueue[None]) -> CommitWatcher:
    """A watcher of ``database`` that only its bell wakes, its first look heard."""
    watcher = CommitWatcher(
        lambda: sqlite3.connect(database, check_same_thread=False, isolation_level=None),
        lambda: heard.put(None),
        interval=NEVER,
        bell=_bell(database),
    )
    assert watcher.start()
    heard.get(timeout=5)
    return watcher


def test_a_watcher_looks_at_once_when_another_process_queues_a_task(database: Path) -> None:
    heard: queue.SimpleQueue[None] = queue.SimpleQueue()
    watcher = _watching(database, heard)
    submit = """
        import sys
        from tasktrail import Trail
        trail = Trail("sqlite:///" + sys.argv[1])
        trail.task("noop")(lambda ctx: None)
        trail.submit("noop", run=sys.argv[2] == "run")
        trail.close()
        """
    try:
        # A task that is not queued wakes no worker: nothing rings.
        subprocess.run([sys.executable, "-c", textwrap.dedent(submit), str(database), "hold"],
                       check=True, timeout=60)  # fmt: skip
        with pytest.raises(queue.Empty):
            heard.get(timeout=1)

        subprocess.run([sys.executable, "-c", textwrap.dedent(submit), str(database), "run"],
                       check=True, timeout=60)  # fmt: skip

        heard.get(timeout=10)
    finally:
        watcher.close(timeout=5)
    assert not watcher._thread.is_alive()  # closed at once, though its poll is far off


def test_a_task_queued_in_the_application_s_transaction_rings_once_it_commits(
    database: Path,
) -> None:
    trail = Trail(f"sqlite:///{database}")
    trail.task("noop")(lambda ctx: None)
    heard: queue.SimpleQueue[None] = queue.SimpleQueue()
    watcher = _watching(database, heard)
    try:
        with trail.engine.begin() as conn:
            trail.submit("noop", using=conn)
            with pytest.raises(queue.Empty):
                heard.get(timeout=0.5)  # not committed yet
        heard.get(timeout=10)
    finally:
        watcher.close(timeout=5)
        trail.close()
