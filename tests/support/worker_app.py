"""The test task functions on ``TASKTRAIL_DATABASE_URL``, for worker processes:
``tasktrail worker --app support.worker_app:trail``."""

from __future__ import annotations

import os

from tasktrail import Trail
from tests.support.tasks import register

trail = Trail(os.environ["TASKTRAIL_DATABASE_URL"])
register(trail)
