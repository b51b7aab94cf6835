"""Read-only aggregates for the dashboard and ``/metrics``: counts computed from the tables
at the moment they are asked for, so every process reading the database agrees."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Connection

from tasktrail.records import EventRecord
from tasktrail.states import Status
from tasktrail.store import statements as q


@dataclass(frozen=True)
class DurationHistogram:
    """Cumulative counts of run durations: ``buckets[i]`` runs took at most ``bounds[i]``
    seconds; ``count`` runs in all, taking ``total`` seconds together."""

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]
    count: int
    total: float


@dataclass(frozen=True)
class Throughput:
    """Runs that ended per queue and time window, oldest window first; ``completed`` and
    ``failed`` hold only the queues with a run ending in the windows."""

    starts: tuple[datetime, ...]
    width: timedelta
    completed: dict[str, tuple[int, ...]]
    failed: dict[str, tuple[int, ...]]

    def of(self, queue: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(completed, failed)`` per window for ``queue`` (zeros when it had none)."""
        zeros = (0,) * len(self.starts)
        return self.completed.get(queue, zeros), self.failed.get(queue, zeros)


@dataclass(frozen=True)
class History:
    """The newest events of one task, oldest first, and how many older ones were left out."""

    events: tuple[EventRecord, ...]
    omitted: int


@dataclass(frozen=True)
class TransitionCount:
    """How many times one transition moved a task into ``status``."""

    transition: str
    status: Status | None
    count: int


class AggregateQueries:
    """The aggregate half of ``Store`` (mixed into it)."""

    dialect: str
    clock: Callable[[], datetime]

    def reading(self) -> AbstractContextManager[Connection]:  # pragma: no cover - Store's
        raise NotImplementedError

    def status_counts(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        resource: tuple[str, str] | None = None,
        cap: int | None = None,
    ) -> dict[Status, int]:
        """How many tasks matching the filters are in each status (absent: none). With
        ``cap``, each count is exact up to ``cap``; ``cap + 1`` stands for "more than
        ``cap``", which keeps the count cheap however many tasks there are."""
        with self.reading() as c:
            if cap is None:
                rows = c.execute(q.status_counts(name=name, queue=queue, resource=resource))
                return {Status(status): int(count) for status, count in rows.tuples()}
            statement = q.capped_status_counts(name=name, queue=queue, resource=resource, cap=cap)
            row = c.execute(statement).one()
        return {status: int(count) for status, count in zip(Status, row, strict=True) if count}

    def queue_status_counts(self) -> dict[tuple[str, Status], int]:
        """How many tasks are in each (queue, status) pair that has any."""
        with self.reading() as c:
            rows = c.execute(q.queue_status_counts()).tuples()
            return {(queue, Status(status)): int(count) for queue, status, count in rows}

    def oldest_queued(self) -> dict[str, datetime]:
        """For each queue with queued tasks, when its longest-waiting one was queued."""
        with self.reading() as c:
            rows = c.execute(q.oldest_queued()).tuples()
            return {queue: _aware(at) for queue, at in rows if at is not None}

    def transition_counts(self) -> list[TransitionCount]:
        """Every transition event recorded so far, counted by transition name and target."""
        with self.reading() as c:
            rows = c.execute(q.transition_counts()).tuples().all()
        return [
            TransitionCount(str(name), Status(status) if status else None, int(count))
            for name, status, count in rows
        ]

    def lost_recoveries(self, limit: int = 20) -> list[EventRecord]:
        """The latest lost-worker recoveries (``lose`` transitions), newest first."""
        with self.reading() as c:
            rows = c.execute(q.lost_recoveries(limit)).all()
        return [EventRecord.from_row(r._mapping) for r in rows]

    def task_history(self, task_id: str, limit: int) -> History:
        """The newest ``limit`` events of a task (oldest first, as a timeline reads) and
        the number of older events not included; one consistent snapshot."""
        with self.reading() as c:
            rows = c.execute(q.latest_events(task_id, limit)).all()
            shown = [EventRecord.from_row(r._mapping) for r in reversed(rows)]
            omitted = 0
            if len(shown) == limit:
                omitted = int(c.execute(q.count_events_before(task_id, shown[0].id)).scalar_one())
        return History(events=tuple(shown), omitted=omitted)

    def last_traceback(self, task_id: str) -> str | None:
        """The traceback of the task's latest failing transition that recorded one."""
        with self.reading() as c:
            text = c.execute(q.last_traceback(task_id)).scalar_one_or_none()
        return text if isinstance(text, str) else None

    def run_duration_histogram(self, bounds: Sequence[float]) -> DurationHistogram:
        """Durations of the last run of every finished task that ran, in ``bounds``."""
        with self.reading() as c:
            row = c.execute(q.run_duration_histogram(self.dialect, bounds)).one()
        values = list(row)
        return DurationHistogram(
            bounds=tuple(bounds),
            buckets=tuple(int(v) for v in values[: len(bounds)]),
            count=int(values[len(bounds)]),
            total=float(values[len(bounds) + 1]),
        )

    def throughput(self, *, window: timedelta, buckets: int) -> Throughput:
        """Per queue, runs that ended completed or failed in each of ``buckets`` equal
        slices of the last ``window``, oldest first."""
        width = window / buckets
        since = self.clock() - window
        with self.reading() as c:
            rows = c.execute(q.finished_per_bucket(since, width, buckets)).all()
        return Throughput(
            starts=tuple(since + width * i for i in range(buckets)),
            width=width,
            completed={str(r[0]): tuple(int(v) for v in r[1::2]) for r in rows},
            failed={str(r[0]): tuple(int(v) for v in r[2::2]) for r in rows},
        )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
