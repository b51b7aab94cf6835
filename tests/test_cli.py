"""The ``tasktrail`` command, run as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasktrail import SchemaNotReady, Status, Trail

ROOT = Path(__file__).resolve().parents[1]


def tasktrail(database_url: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKTRAIL_DATABASE_URL": database_url, "COLUMNS": "200"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "tasktrail", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_current_downgrade(empty_database_url: str) -> None:
    assert "none (behind" in tasktrail(empty_database_url, "db", "current").stdout
    upgraded = tasktrail(empty_database_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "(up to date)" in tasktrail(empty_database_url, "db", "current").stdout
    assert tasktrail(empty_database_url, "db", "downgrade", "base").returncode == 0
    assert "none" in tasktrail(empty_database_url, "db", "current").stdout


def test_tasks_list_show_retry_cancel(database_url: str) -> None:
    app = "tests.support.sample_app:trail"
    trail = Trail(database_url)
    from tests.support import sample_app as sample

    trail.registry = sample.trail.registry
    failed = trail.submit("sample.fail")
    waiting = trail.submit("sample.add", {"a": 1, "b": 2})
    trail.run_pending(limit=1)
    assert trail.get(failed.id).status is Status.FAILED

    listing = tasktrail(database_url, "tasks", "list", "--app", app)
    assert listing.returncode == 0, listing.stderr
    assert failed.id in listing.stdout and waiting.id in listing.stdout

    shown = tasktrail(database_url, "tasks", "show", failed.id, "--app", app)
    assert "sample failure" in shown.stdout and "running → failed" in shown.stdout

    retried = tasktrail(database_url, "tasks", "retry", failed.id, "--app", app)
    assert f"{failed.id} is queued" in retried.stdout
    cancelled = tasktrail(database_url, "tasks", "cancel", waiting.id, "--app", app)
    assert f"{waiting.id}: cancelled" in cancelled.stdout

    refused = tasktrail(database_url, "tasks", "cancel", waiting.id, "--app", app)
    assert refused.returncode == 1
    assert "already cancelled" in refused.stdout
    missing = tasktrail(database_url, "tasks", "show", "nope", "--app", app)
    assert missing.returncode == 1 and "no task with id 'nope'" in missing.stdout
    trail.close()


def test_a_bad_app_spec_is_a_clear_usage_error(tmp_path: Path) -> None:
    result = tasktrail(f"sqlite:///{tmp_path}/x.db", "tasks", "list", "--app", "nomodule")
    assert result.returncode == 2
    assert "MODULE:ATTR" in result.stderr


def test_the_demo_app_refuses_to_load_outside_tasktrail_demo(tmp_path: Path) -> None:
    # Its roadmaps live in the demo process's memory: a worker elsewhere could not run them.
    result = tasktrail(
        f"sqlite:///{tmp_path}/x.db", "tasks", "list", "--app", "tasktrail.demo:trail"
    )
    assert result.returncode == 2
    assert "runs only there; start it with `tasktrail demo`" in result.stderr


@pytest.mark.slow
def test_demo_serves_and_runs_the_sample_roadmaps_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    # `tasktrail demo` serves until stopped (see tests/test_cli_serve.py for its HTTP side).
    env_url = f"sqlite:///{tmp_path}/demo.db"
    env = {**os.environ, "TASKTRAIL_DATABASE_URL": env_url, "TASKTRAIL_DEMO_ITEM_SECONDS": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    demo = subprocess.Popen(
        [sys.executable, "-m", "tasktrail", "demo", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        finished: list[Status] = []
        while time.monotonic() < deadline and demo.poll() is None:
            try:  # the demo process creates the schema; do not race it
                trail = Trail(env_url, auto_migrate=False)
            except SchemaNotReady:
                time.sleep(0.1)
                continue
            finished = [t.status for t in trail.list_tasks().items if t.status.is_terminal]
            trail.close()
            if len(finished) == 2:
                break
            time.sleep(0.1)
        assert len(finished) == 2
        assert all(s in {Status.COMPLETED, Status.PARTIAL_FAILURE} for s in finished)
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(30) == 0
