"""A real ``tasktrail worker`` process running the test task functions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The project root: ``tests.support`` is importable from there.
ROOT = Path(__file__).parent.parent.parent


@contextmanager
def worker_process(database_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``tasktrail worker`` on ``database_url`` in another process while the block runs."""
    env = {
        **os.environ,
        "TASKTRAIL_DATABASE_URL": database_url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "tasktrail.cli",
        "worker",
        "--app",
        "tests.support.worker_app:trail",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--concurrency", "1"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
