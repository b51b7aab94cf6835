"""Helpers for tests of submitting in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence

from tasktrail import Executor, TaskRecord


class RecordingExecutor(Executor):
    """Runs nothing: remembers the ids of the tasks it was told of, in order."""

    def __init__(self) -> None:
        self.dispatched: list[str] = []

    def dispatch(self, tasks: Sequence[TaskRecord]) -> None:
        self.dispatched += [t.id for t in tasks]


def async_url(database_url: str) -> str:
    """``database_url`` with the async driver of its database."""
    if database_url.startswith("sqlite"):
        return database_url.replace("sqlite://", "sqlite+aiosqlite://", 1)
    return database_url.replace("postgresql+psycopg://", "postgresql+psycopg_async://", 1)
