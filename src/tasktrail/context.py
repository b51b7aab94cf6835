"""``TaskContext``: what a running task function uses to report progress, items and logs,
and to learn that it should stop."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

from tasktrail.errors import InvalidInput, RunSuperseded, TaskCancelled
from tasktrail.records import TaskRecord
from tasktrail.states import ItemStatus
from tasktrail.store import Store
from tasktrail.text import refuse_nul, refuse_too_deep, storable

LOG_LEVELS = frozenset({"debug", "info", "warning", "error"})
MAX_STEP_LENGTH = 200
MAX_ITEM_KEY_LENGTH = 200
#: After a run's first report, progress is written at most this often (seconds).
DEFAULT_PROGRESS_INTERVAL = 0.25


def check_progress(percent: object) -> float:
    """``percent`` as a float, or ``InvalidInput`` unless it is a number in 0..100."""
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise InvalidInput(f"progress must be a number from 0 to 100, got {percent!r}")
    value = float(percent)
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise InvalidInput(f"progress must be a number from 0 to 100, got {percent!r}")
    return value


def check_progress_interval(seconds: object) -> float:
    """``seconds`` as a float, or ``InvalidInput`` unless it is a finite number ≥ 0."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds < math.inf
    ):
        raise InvalidInput(
            f"progress_interval must be a finite number of seconds ≥ 0, got {seconds!r}"
        )
    return float(seconds)


def check_step(step: object) -> str | None:
    """``step`` unchanged, or ``InvalidInput`` unless it is None or a short string."""
    if step is None:
        return None
    if not isinstance(step, str) or len(step) > MAX_STEP_LENGTH:
        raise InvalidInput(f"step must be a string of at most {MAX_STEP_LENGTH} characters")
    refuse_nul(step, "step")
    return step


def check_json(value: object, what: str) -> None:
    """``InvalidInput`` unless ``value`` can be stored as JSON (and read back: no NUL
    characters, no nesting deeper than ``MAX_JSON_DEPTH``)."""
    refuse_too_deep(value, what)  # first: json.dumps recurses
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be JSON-serialisable: {exc}") from None
    refuse_nul(value, what)


def describe_error(error: BaseException) -> str:
    """``"ValueError: bad input"``: the form errors are stored in."""
    text = storable(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class TaskContext:
    """Handed to a task function as its first argument, for the duration of one run.

    ``task_id``, ``name``, ``attempt`` (1 on the first run) and ``params`` describe the run.
    ``progress_interval`` is how often, at most, ``progress`` writes (0: every change).
    """

    def __init__(
        self,
        store: Store,
        task: TaskRecord,
        *,
        worker: str,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    ) -> None:
        self.task_id = task.id
        self.name = task.name
        self.attempt = task.attempts
        self.params: dict[str, Any] = dict(task.params)
        self._store = store
        self._worker = worker
        self._interval = check_progress_interval(progress_interval)
        self._reported = False
        self._lock = threading.Lock()
        self._written: tuple[float, str | None] = (task.progress, task.current_step)
        self._pending: tuple[float, str | None] | None = None
        self._last_contact = time.monotonic()
        self._cancel_requested = task.cancel_requested_at is not None

    # -- progress and cancellation -------------------------------------------------------

    def progress(self, percent: float, step: str | None = None) -> None:
        """Report ``percent`` done (0..100) and the current ``step``.

        Writes are coalesced, whatever the step: the run's first report is stored at once
        (so a watcher sees it start), later ones at most every ``progress_interval`` seconds
        (every changed report when it is 0), and the last value always lands when the run
        ends. A report followed by a long silence shows at the next ``progress`` or
        ``check_cancelled`` after the interval, or at the end of the run.
        Raises ``TaskCancelled`` once a cancel of this task was requested.
        """
        value, step = check_progress(percent), check_step(step)
        with self._lock:
            self._pending = (value, step)
            now = time.monotonic()
            if not self._reported or now - self._last_contact >= self._interval:
                self._reported = True
                self._flush_locked(now)
        self._raise_if_cancelled()

    def check_cancelled(self) -> None:
        """Raise ``TaskCancelled`` if a cancel of this task was requested (asks the database)."""
        with self._lock:
            self._flush_locked(time.monotonic(), always_contact=True)
        self._raise_if_cancelled()

    def flush(self) -> None:
        """Store any progress not written yet; without any, touch nothing (the run's end is
        checked against the task by the transition that records it)."""
        with self._lock:
            if self._pending is not None and self._pending != self._written:
                self._flush_locked(time.monotonic())

    def _flush_locked(self, now: float, *, always_contact: bool = False) -> None:
        pending = self._pending
        if pending is not None and pending != self._written:
            self._cancel_requested = self._store.record_progress(
                self.task_id, self.attempt, pending[0], pending[1], actor=self._worker
            )
            self._written = pending
            self._pending = None
            self._last_contact = now
        elif always_contact or now - self._last_contact >= self._interval:
            self._cancel_requested = self._store.cancel_requested(self.task_id, self.attempt)
            self._last_contact = now

    def _raise_if_cancelled(self) -> None:
        if self._cancel_requested:
            raise TaskCancelled(f"task {self.task_id!r} was asked to stop")

    # -- logs and items -----------------------------------------------------------------

    def log(self, level: str, message: str, data: Any = None) -> None:
        """Append a log line to the task's history (levels: debug, info, warning, error)."""
        if level not in LOG_LEVELS:
            raise InvalidInput(f"log level must be one of {sorted(LOG_LEVELS)}, got {level!r}")
        if not isinstance(message, str):
            raise InvalidInput("log message must be a string")
        refuse_nul(message, "log message")
        check_json(data, "log data")
        self._store.add_event(
            self.task_id,
            "log",
            message=message,
            data={"level": level, "data": data},
            actor=self._worker,
        )

    def items(self, keys: Iterable[str]) -> Iterator[Item]:
        """The items of this task still to do, in order, each to use as ``with item:``.

        On the first run that is every key; on a later run (a retry, or an attempt after a
        failure) the items already completed are skipped.
        """
        key_list = list(keys)
        _check_item_keys(key_list)
        for record in self._store.prepare_items(self.task_id, key_list):
            yield Item(self, record.key)

    def _set_item(self, key: str, status: ItemStatus, error: str | None = None) -> None:
        self._store.set_item(
            self.task_id, key, status, attempt=self.attempt, error=error, actor=self._worker
        )

    # -- async twins --------------------------------------------------------------------

    async def progress_async(self, percent: float, step: str | None = None) -> None:
        """Async version of ``progress``."""
        await asyncio.to_thread(self.progress, percent, step)

    async def check_cancelled_async(self) -> None:
        """Async version of ``check_cancelled``."""
        await asyncio.to_thread(self.check_cancelled)

    async def log_async(self, level: str, message: str, data: Any = None) -> None:
        """Async version of ``log``."""
        await asyncio.to_thread(self.log, level, message, data)

    async def items_async(self, keys: Iterable[str]) -> list[Item]:
        """Async version of ``items``, without blocking the event loop: the items still to
        do, each to use as ``async with item:``."""
        key_list = list(keys)
        return await asyncio.to_thread(lambda: list(self.items(key_list)))


class Item:
    """One item of a task. ``with item:`` marks it running, then completed — or failed if
    the block raises, in which case the exception is recorded and swallowed so the loop
    goes on. Cancellation and superseded runs are not swallowed."""

    def __init__(self, context: TaskContext, key: str) -> None:
        self.key = key
        self._context = context

    def __enter__(self) -> Item:
        self._context._set_item(self.key, ItemStatus.RUNNING)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc is None:
            self._context._set_item(self.key, ItemStatus.COMPLETED)
            return False
        if isinstance(exc, RunSuperseded) or not isinstance(exc, Exception):
            return False
        if isinstance(exc, TaskCancelled):
            self._context._set_item(self.key, ItemStatus.PENDING)
            return False
        self._context._set_item(self.key, ItemStatus.FAILED, describe_error(exc))
        return True

    async def __aenter__(self) -> Item:
        await asyncio.to_thread(self.__enter__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return await asyncio.to_thread(self.__exit__, exc_type, exc, traceback)

    def __repr__(self) -> str:
        return f"Item({self.key!r})"


def _check_item_keys(keys: list[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if not isinstance(key, str) or not key or len(key) > MAX_ITEM_KEY_LENGTH:
            raise InvalidInput(
                f"item keys must be non-empty strings of at most {MAX_ITEM_KEY_LENGTH} "
                f"characters, got {key!r}"
            )
        refuse_nul(key, "item keys")
        if key in seen:
            raise InvalidInput(f"item key {key!r} is given twice")
        seen.add(key)
