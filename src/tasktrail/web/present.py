"""Turning records into what the pages show: pure functions, no I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tasktrail.records import TaskRecord
from tasktrail.states import CANCEL, Status, retry_transition


def count_label(count: int, cap: int) -> str:
    """A count as the dashboard shows it: ``"1,234"``, or ``"10,000+"`` past ``cap``."""
    return f"{cap:,}+" if count > cap else f"{count:,}"


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON text (the template escapes it)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def when(value: datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC, or an empty string."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def age(seconds: float) -> str:
    """A duration, short: ``42s``, ``3m 05s``, ``2h 10m``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def duration(task: TaskRecord) -> str:
    """How long the task's last run took, once it has finished; empty while it runs or
    when it never ran."""
    end = task.completed_at
    if task.started_at is None or end is None or end < task.started_at:
        return ""
    return age((end - task.started_at).total_seconds())


@dataclass(frozen=True)
class Actions:
    """Which buttons the task page enables: exactly what the state machine allows."""

    cancel: bool
    retry: bool
    retry_failed_items: bool


def actions(status: Status, failed_items: int) -> Actions:
    """The actions the state machine would accept for a task in ``status``."""
    retry = retry_transition(force=False).allows(status)
    return Actions(
        cancel=CANCEL.allows(status), retry=retry, retry_failed_items=retry and failed_items > 0
    )


@dataclass(frozen=True)
class Bar:
    """One bar of a small SVG chart (coordinates in the chart's own units)."""

    x: float
    y: float
    width: float
    height: float
    label: str


def bars(
    values: Sequence[float], labels: Sequence[str], *, height: float = 40, top: float = 0
) -> list[Bar]:
    """Bars for ``values`` over 100 units of width; a value of ``top`` (default: the
    largest value) fills ``height``."""
    top = top or max(values, default=0) or 1
    width = 100 / max(len(values), 1)
    result = []
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        h = height * value / top
        result.append(Bar(index * width + 0.5, height - h, max(width - 1, 0.5), h, label))
    return result


def failure_rates(completed: Sequence[int], failed: Sequence[int]) -> list[float]:
    """Per window, the share of ended runs that failed, in percent (0 with no runs)."""
    return [100 * f / (c + f) if c + f else 0.0 for c, f in zip(completed, failed, strict=True)]


def window_labels(starts: Sequence[datetime], width: timedelta) -> list[str]:
    """``HH:MM-HH:MM`` for each window."""
    return [f"{s:%H:%M}-{s + width:%H:%M}" for s in starts]


@dataclass(frozen=True)
class QueueCharts:
    """One queue's pair of charts on the overview: runs completed and failure rate."""

    queue: str
    throughput: list[Bar]
    failures: list[Bar]
    completed: int
    failed: int


def queue_charts(
    queue: str, completed: Sequence[int], failed: Sequence[int], labels: Sequence[str]
) -> QueueCharts:
    """The two charts of ``queue`` from its per-window counts; each bar's label ends with
    the value it draws."""
    rates = failure_rates(completed, failed)
    runs = [f"{label}: {c} completed" for label, c in zip(labels, completed, strict=True)]
    shares = [
        f"{label}: {r:.0f}% of {c + f} failed"
        for label, r, c, f in zip(labels, rates, completed, failed, strict=True)
    ]
    return QueueCharts(
        queue=queue,
        throughput=bars([float(c) for c in completed], runs),
        failures=bars(rates, shares, top=100),
        completed=sum(completed),
        failed=sum(failed),
    )
