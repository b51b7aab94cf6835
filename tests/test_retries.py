from __future__ import annotations

import random

import pytest

from tasktrail import DoNotRetry
from tasktrail.retries import JITTER, MAX_DELAY_SECONDS, backoff_delay, should_retry


def test_retry_needs_attempts_left_and_a_matching_error() -> None:
    kinds = (ConnectionError,)
    assert should_retry(ConnectionError(), attempt=1, max_attempts=3, retry_on=kinds)
    assert not should_retry(ConnectionError(), attempt=3, max_attempts=3, retry_on=kinds)
    assert not should_retry(ValueError(), attempt=1, max_attempts=3, retry_on=kinds)
    assert not should_retry(DoNotRetry("no"), attempt=1, max_attempts=3, retry_on=(Exception,))


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_backoff_doubles_each_attempt_within_the_jitter(attempt: int) -> None:
    rng = random.Random(attempt)
    expected = 2.0 * 2 ** (attempt - 1)
    for _ in range(100):
        delay = backoff_delay(2.0, attempt, rng=rng)
        assert expected * JITTER[0] <= delay <= expected * JITTER[1]


def test_backoff_is_capped() -> None:
    assert backoff_delay(60, 30) <= MAX_DELAY_SECONDS
