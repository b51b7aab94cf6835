"""Settings read from the environment; command-line flags and arguments override them."""

from __future__ import annotations

import os

from tasktrail.errors import InvalidInput

DEFAULT_HEARTBEAT_INTERVAL = 5.0
DEFAULT_HEARTBEAT_TIMEOUT = 30.0


def positive(what: str, value: float) -> float:
    """``value`` as a float, or ``InvalidInput`` unless it is more than zero seconds."""
    if not value > 0:
        raise InvalidInput(f"{what} must be more than 0 seconds, got {value!r}")
    return float(value)


def seconds_from_env(name: str, default: float) -> float:
    """The positive number of seconds in environment variable ``name``, else ``default``."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number of seconds, got {raw!r}") from None
    return positive(name, value)


def heartbeat_interval_from_env() -> float:
    """Seconds between heartbeats: ``TASKTRAIL_HEARTBEAT_INTERVAL``, else 5."""
    return seconds_from_env("TASKTRAIL_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL)


def heartbeat_timeout_from_env() -> float:
    """Seconds of silence after which a run counts as lost:
    ``TASKTRAIL_HEARTBEAT_TIMEOUT``, else 30."""
    return seconds_from_env("TASKTRAIL_HEARTBEAT_TIMEOUT", DEFAULT_HEARTBEAT_TIMEOUT)


def heartbeat_settings(interval: float | None, timeout: float | None) -> tuple[float, float]:
    """The heartbeat interval and timeout: the arguments when given, else the environment.

    ``InvalidInput`` unless both are positive and the timeout outlasts several beats.
    """
    interval = (
        positive("heartbeat_interval", interval)
        if interval is not None
        else heartbeat_interval_from_env()
    )
    timeout = (
        positive("heartbeat_timeout", timeout)
        if timeout is not None
        else (heartbeat_timeout_from_env())
    )
    if timeout <= interval:
        raise InvalidInput(
            f"the heartbeat timeout ({timeout:g}s) must be longer than the "
            f"heartbeat interval ({interval:g}s)"
        )
    return interval, timeout
