"""Every exception tasktrail raises derives from ``TasktrailError``."""

from __future__ import annotations


class TasktrailError(Exception):
    """Base class of tasktrail's exceptions."""


class TaskNotFound(TasktrailError, LookupError):
    """No task has the given id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


class InvalidTransition(TasktrailError):
    """The state machine refused a status change; ``current`` is the task's status now."""

    def __init__(self, task_id: str, action: str, current: str, message: str | None = None):
        super().__init__(
            message or f"cannot {action} task {task_id!r}: it is {current}",
        )
        self.task_id = task_id
        self.action = action
        self.current = current


class InvalidInput(TasktrailError, ValueError):
    """An argument was rejected before anything was written; the message says which."""


class UnknownTask(InvalidInput):
    """No task function is registered under the given name."""

    def __init__(self, name: str, known: list[str]) -> None:
        hint = f"; registered: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"no task registered as {name!r}{hint}")
        self.name = name


class SchemaNotReady(TasktrailError):
    """The database's tasktrail tables are missing or older than this version."""


class TaskCancelled(TasktrailError):
    """Raised inside a task function when its cancellation was requested.

    Let it propagate: the worker acknowledges the cancel and records the task ``cancelled``.
    """


class RunSuperseded(TasktrailError):
    """Raised inside a task function whose run no longer owns the task.

    The reaper gave the task to another run (or it was cancelled by force); whatever this
    run does now is discarded.
    """
