"""Checking a submission before anything is written. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasktrail.context import check_json
from tasktrail.errors import InvalidInput
from tasktrail.ids import new_id
from tasktrail.records import Link
from tasktrail.registry import TaskDefinition
from tasktrail.states import initial_status
from tasktrail.store import NewTask
from tasktrail.text import refuse_nul

MAX_ATTEMPTS_LIMIT = 1000
MAX_DEDUPE_KEY_LENGTH = 300
MAX_QUEUE_LENGTH = 100


@dataclass(frozen=True)
class Submission:
    """One task of a ``Trail.submit_many`` batch: ``submit``'s arguments, by the same names
    and with the same defaults (the task's registered policy where None)."""

    name: str
    params: dict[str, Any] | None = None
    links: Iterable[Link] | None = None
    dedupe_key: str | None = None
    run: bool = True
    max_attempts: int | None = None
    backoff: float | None = None
    queue: str | None = None
    priority: int | None = None
    run_after: datetime | None = None
    description: str | None = None


def new_task(
    definition: TaskDefinition,
    params: Any,
    *,
    links: Iterable[Link] | None,
    dedupe_key: str | None,
    run: bool,
    max_attempts: int | None,
    backoff: float | None,
    queue: str | None,
    priority: int | None,
    run_after: datetime | None,
    description: str | None,
    now: datetime,
) -> NewTask:
    """A ``NewTask`` for ``definition``, or ``InvalidInput`` naming what is wrong."""
    params = {} if params is None else params
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise InvalidInput("params must be a JSON object (a dict with string keys)")
    check_json(params, "params")
    definition.check_params(params)
    return NewTask(
        id=new_id(),
        name=definition.name,
        params=params,
        status=initial_status(run=run, run_after=_aware(run_after), now=now),
        max_attempts=_max_attempts(
            definition.max_attempts if max_attempts is None else max_attempts
        ),
        backoff=_backoff(definition.backoff if backoff is None else backoff),
        queue=_queue(definition.queue if queue is None else queue),
        priority=_priority(definition.priority if priority is None else priority),
        dedupe_key=_dedupe_key(dedupe_key),
        description=_description(description),
        run_after=run_after,
        links=_links(links),
    )


def _links(links: Iterable[Link] | None) -> tuple[Link, ...]:
    if links is None:
        return ()
    not_links = InvalidInput("links must be a list of tasktrail.Link")
    if isinstance(links, str | bytes):
        raise not_links
    try:
        # Read once: a generator checked and then iterated again would come back empty.
        given = tuple(links)
    except TypeError:
        raise not_links from None
    if not all(isinstance(link, Link) for link in given):
        raise not_links
    unique: dict[tuple[str, str], Link] = {}
    for link in given:
        unique.setdefault((link.type, link.id), link)
    return tuple(unique.values())


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
        raise InvalidInput("run_after must be a timezone-aware datetime")
    return moment


def check_policy(*, max_attempts: object, backoff: object, queue: object, priority: object) -> None:
    """``InvalidInput`` naming the first of a task's defaults that a submission would
    refuse; checked when the task is registered, so a bad default fails at import."""
    _max_attempts(max_attempts)
    _backoff(backoff)
    _queue(queue)
    _priority(priority)


def _max_attempts(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"max_attempts must be a whole number, got {value!r}")
    if not 1 <= value <= MAX_ATTEMPTS_LIMIT:
        raise InvalidInput(f"max_attempts must be from 1 to {MAX_ATTEMPTS_LIMIT}, got {value}")
    return value


def _backoff(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise InvalidInput(f"backoff must be a number of seconds from 0 to 3600, got {value!r}")
    return float(value)


def _queue(value: object) -> str:
    refuse_nul(value, "queue")
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_QUEUE_LENGTH:
        raise InvalidInput(
            f"queue must be a non-empty string of at most {MAX_QUEUE_LENGTH} characters"
        )
    return value


def _priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 1_000_000:
        raise InvalidInput(f"priority must be a whole number within ±1000000, got {value!r}")
    return value


def _dedupe_key(value: object) -> str | None:
    if value is None:
        return None
    refuse_nul(value, "dedupe_key")
    if not isinstance(value, str) or not value or len(value) > MAX_DEDUPE_KEY_LENGTH:
        raise InvalidInput(
            f"dedupe_key must be a non-empty string of at most {MAX_DEDUPE_KEY_LENGTH} characters"
        )
    return value


def _description(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput("description must be a string")
    refuse_nul(value, "description")
    return value
