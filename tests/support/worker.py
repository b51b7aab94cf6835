"""A worker in another process: ``python -m support.worker DATABASE_URL TASK_ID``.

Runs queued tasks (with the test task functions) until TASK_ID has finished, then exits.
"""

from __future__ import annotations

import sys
import time

from support.tasks import register
from tasktrail import Trail

if __name__ == "__main__":
    url, task_id = sys.argv[1], sys.argv[2]
    trail = Trail(url, worker_name="test-worker-process")
    register(trail)
    deadline = time.monotonic() + 60
    while not trail.get(task_id).status.is_terminal and time.monotonic() < deadline:
        if trail.run_pending() == 0:
            time.sleep(0.02)
    trail.close()
