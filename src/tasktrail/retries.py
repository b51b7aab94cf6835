"""When a failed run is tried again, and after how long. Pure functions."""

from __future__ import annotations

import random

from tasktrail.errors import TasktrailError

#: Each delay is the exponential delay times a random factor in this range, so that
#: tasks that failed together do not all come back in the same instant.
JITTER = (0.8, 1.2)
MAX_DELAY_SECONDS = 3600.0


class DoNotRetry(TasktrailError):
    """Raise this (``raise DoNotRetry("bad input") from exc``) to fail a task at once,
    whatever attempts it has left."""


def should_retry(
    error: BaseException,
    *,
    attempt: int,
    max_attempts: int,
    retry_on: tuple[type[BaseException], ...],
) -> bool:
    """Whether a run that raised ``error`` on ``attempt`` earns another attempt."""
    if isinstance(error, DoNotRetry) or attempt >= max_attempts:
        return False
    return isinstance(error, retry_on)


def backoff_delay(base: float, attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed ``attempt``: ``base * 2 ** (attempt - 1)``, jittered,
    capped at an hour."""
    exponential = base * 2 ** max(attempt - 1, 0)
    factor = (rng or random).uniform(*JITTER)
    return float(min(exponential * factor, MAX_DELAY_SECONDS))
