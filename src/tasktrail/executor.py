"""Executors: what happens once a task is queued and its transaction has committed.

The database is the queue; an executor only makes sure somebody notices. The embedded
executor wakes the worker threads of this process (other processes hear PostgreSQL
``NOTIFY`` or poll); the Celery executor sends a message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tasktrail.records import TaskRecord
from tasktrail.states import Status

if TYPE_CHECKING:
    from tasktrail.trail import Trail


class Executor:
    """Told about tasks that became queued or scheduled, after their transaction committed.

    Subclasses implement ``dispatch``; the other hooks are optional.
    """

    def attach(self, trail: Trail) -> None:
        """Called once by the ``Trail`` this executor serves, when it is created."""

    def dispatch(self, tasks: Sequence[TaskRecord]) -> None:
        """Make sure a worker will pick ``tasks`` up (queued now, or scheduled for later)."""
        raise NotImplementedError

    def cancelled(self, task: TaskRecord) -> TaskRecord | None:
        """Called after ``Trail.cancel`` (the task is cancelled, or asked to stop); returns
        the task if the executor changed it further (a run it terminated)."""
        return None


class EmbeddedExecutor(Executor):
    """Wakes this process's idle workers; they claim from the database themselves."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._due_watchers: list[threading.Event] = []

    def dispatch(self, tasks: Sequence[TaskRecord]) -> None:
        """Wake every waiting worker of this process; when one of ``tasks`` is scheduled,
        tell them first to look again at when scheduled tasks fall due."""
        if any(task.status is Status.SCHEDULED for task in tasks):
            self.due_times_changed()
        if tasks:
            self.wake()

    def watch_due_times(self, changed: threading.Event) -> Callable[[], None]:
        """Set ``changed`` whenever a task of this process is dispatched as scheduled, so
        that a worker re-reads the earliest due time; returns a function that stops it."""
        with self._condition:
            self._due_watchers.append(changed)

        def unwatch() -> None:
            with self._condition:
                self._due_watchers.remove(changed)

        return unwatch

    def due_times_changed(self) -> None:
        """Tell every watcher (see ``watch_due_times``) that a scheduled task may now be
        the earliest one to fall due; they still need a ``wake`` to act on it."""
        with self._condition:
            watchers = list(self._due_watchers)
        for changed in watchers:
            changed.set()

    def wake(self) -> None:
        """Wake every waiting worker of this process, to look for work in the database."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def mark(self) -> int:
        """A token for ``wait``: take it *before* looking for work, so that a dispatch
        between the look and the wait is not missed."""
        with self._condition:
            return self._generation

    def wait(self, since: int, timeout: float) -> bool:
        """Block until a dispatch after ``since`` (from ``mark``) or ``timeout`` seconds;
        True if a dispatch came."""
        with self._condition:
            return self._condition.wait_for(lambda: self._generation != since, timeout)
