"""``tasktrail serve`` and ``tasktrail demo`` as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.polling import eventually

ROOT = Path(__file__).parent.parent
URL = re.compile(r"serving (http://\S+)")


@contextmanager
def running(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Run ``tasktrail ARGS`` until the block ends (then SIGTERM); yields its URL and the
    lines it printed so far (kept growing)."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("TASKTRAIL_")
    }
    environment |= {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tasktrail.cli", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:

        def announced() -> str | None:
            for line in lines:
                if found := URL.search(line):
                    return found.group(1)
            if process.poll() is not None:
                raise AssertionError(f"exited before serving: {''.join(lines)}")
            return None

        found = eventually(announced, timeout=30)
        yield found, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise AssertionError("the server did not stop on SIGTERM") from None
        reader.join(5)
        process.stdout.close()
    assert process.returncode == 0, "".join(lines)


def test_serve_with_no_flags_uses_the_embedded_default(tmp_path: Path) -> None:
    with running("serve", "--port", "0", cwd=tmp_path) as (url, _):
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{url}/api/v1/tasks").json() == {"items": [], "next_cursor": None}
    assert (tmp_path / "tasktrail.db").exists()


def test_serve_runs_submitted_tasks_with_its_embedded_worker(
    database_url: str, tmp_path: Path
) -> None:
    env = {"TASKTRAIL_DATABASE_URL": database_url}
    with running(
        "serve", "--app", "tests.support.worker_app:trail", "--port", "0", "--concurrency", "2",
        cwd=tmp_path, env=env,
    ) as (url, _):  # fmt: skip
        task = httpx.post(f"{url}/api/v1/tasks", json={"name": "test.echo", "params": {"a": 1}})
        assert task.status_code == 201
        done = eventually(
            lambda: (
                (t := httpx.get(f"{url}/api/v1/tasks/{task.json()['id']}").json())["status"]
                == "completed"
                and t
            )
        )
        assert done["result"] == {"a": 1}


def test_serve_without_worker_leaves_tasks_queued(database_url: str, tmp_path: Path) -> None:
    env = {"TASKTRAIL_DATABASE_URL": database_url}
    with running(
        "serve", "--app", "tests.support.worker_app:trail", "--port", "0", "--no-worker",
        cwd=tmp_path, env=env,
    ) as (url, _):  # fmt: skip
        task = httpx.post(f"{url}/api/v1/tasks", json={"name": "test.echo"}).json()
        # Nothing else can run it: it must still be queued after its status is read back
        # through the API a few times.
        for _ in range(5):
            assert httpx.get(f"{url}/api/v1/tasks/{task['id']}/status").json()["status"] == "queued"


@pytest.mark.parametrize(
    ("command", "host"),
    [("serve", "0.0.0.0"), ("serve", "::"), ("serve", "192.0.2.1"), ("serve", "example.com"),
     ("demo", "0.0.0.0")],
)  # fmt: skip
def test_serve_refuses_an_exposed_host_without_a_token(
    tmp_path: Path, command: str, host: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tasktrail.cli", command, "--host", host, "--port", "0"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"refusing to serve on {host} without an API token" in result.stdout
    assert "TASKTRAIL_API_TOKEN" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "tasktrail.db").exists()  # refused before anything was opened


@pytest.mark.parametrize(
    ("host", "reach"),
    [("localhost", "localhost"), ("::1", "[::1]"), ("127.0.0.2", "127.0.0.2")],
)
def test_serve_on_a_loopback_host_needs_no_token(tmp_path: Path, host: str, reach: str) -> None:
    with running("serve", "--host", host, "--port", "0", "--no-worker", cwd=tmp_path) as (url, _):
        port = url.rsplit(":", 1)[1]
        answer = httpx.get(f"http://{reach}:{port}/api/v1/tasks")
        assert answer.status_code == 200, answer.text


def test_serve_insecure_exposes_the_api_without_a_token(tmp_path: Path) -> None:
    with running(
        "serve", "--host", "0.0.0.0", "--port", "0", "--insecure", "--no-worker", cwd=tmp_path
    ) as (url, _):
        local = url.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(f"{local}/api/v1/tasks").status_code == 200


def test_serve_on_a_busy_port_says_so(tmp_path: Path) -> None:
    with running("serve", "--port", "0", "--no-worker", cwd=tmp_path) as (url, _):
        port = url.rsplit(":", 1)[1]
        result = subprocess.run(
            [sys.executable, "-m", "tasktrail.cli", "serve", "--port", port, "--no-worker"],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_serve_on_an_exposed_host_with_a_token_requires_it(tmp_path: Path) -> None:
    env = {"TASKTRAIL_API_TOKEN": "t0ken"}
    with running("serve", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path, env=env) as (url, _):
        local = url.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(f"{local}/api/v1/tasks").status_code == 401
        ok = httpx.get(f"{local}/api/v1/tasks", headers={"Authorization": "Bearer t0ken"})
        assert ok.status_code == 200


@pytest.mark.slow
def test_demo_serves_the_roadmap_app_with_sample_tasks(tmp_path: Path) -> None:
    # Retries take 3 * 0.3 s: long enough to cancel one before it ends.
    env = {"TASKTRAIL_DEMO_ITEM_SECONDS": "0.3"}
    with running("demo", "--port", "0", cwd=tmp_path, env=env) as (url, lines):
        # Printed after the address, which is all ``running`` waits for.
        ids = eventually(
            lambda: re.search(r"sample roadmap tasks: (\S+), (\S+)", "".join(lines)), timeout=30
        )
        for task_id in ids.groups():

            def finished(task_id: str = task_id) -> bool:
                status = httpx.get(f"{url}/api/v1/tasks/{task_id}").json()["status"]
                return status not in {"created", "queued", "running"}

            eventually(finished, timeout=30)
            # Some contents fail on purpose: every sample roadmap ends partially failed.
            ended = httpx.get(f"{url}/api/v1/tasks/{task_id}").json()
            assert ended["status"] == "partial_failure", ended
        roadmap = httpx.get(f"{url}/roadmaps/roadmap-1").json()
        assert set(roadmap) == {"python-basics-1", "python-basics-2", "python-basics-3"}
        check = httpx.get(f"{url}/api/v1/resources/roadmap/roadmap-1/status-check").json()
        assert check["has_active_task"] is False
        assert check["stale_items"] == []
        retry = httpx.post(f"{url}/roadmaps/roadmap-1/concepts/python-basics-1/quiz/retry")
        assert retry.status_code == 201
        linked = httpx.get(f"{url}/api/v1/resources/roadmap/roadmap-1/tasks").json()
        assert linked[0]["id"] == retry.json()["task_id"]
        assert linked[0]["role"] == "retry_quiz"
        # One active retry per content: asking again answers the same task.
        again = httpx.post(f"{url}/roadmaps/roadmap-1/concepts/python-basics-1/quiz/retry")
        assert again.json()["task_id"] == retry.json()["task_id"]
        eventually(
            lambda: (
                httpx.get(f"{url}/api/v1/tasks/{again.json()['task_id']}").json()["status"]
                == "completed"
            )
        )
        # A retry of the content that failed stops before it regenerates it (as a killed
        # one would): once it is no longer active, the content still claims to be in
        # progress and the status check reports it stale.
        failed = httpx.post(f"{url}/roadmaps/roadmap-1/concepts/python-basics-1/tutorial/retry")
        retry_id = failed.json()["task_id"]
        assert httpx.post(f"{url}/api/v1/tasks/{retry_id}/cancel").status_code == 200
        eventually(
            lambda: httpx.get(f"{url}/api/v1/tasks/{retry_id}").json()["status"] == "cancelled"
        )
        check = httpx.get(f"{url}/api/v1/resources/roadmap/roadmap-1/status-check").json()
        assert check["has_active_task"] is False
        assert [(e["item"], e["content_type"]) for e in check["stale_items"]] == [
            ("python-basics-1", "tutorial")
        ]
