"""Prometheus metrics computed from the database at scrape time.

Every value is read from the tables when ``/metrics`` is scraped, never counted in memory,
so one scrape of any process tells the truth about every worker process sharing the
database, and the numbers survive restarts.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from tasktrail.states import Status
from tasktrail.store import Store

#: Upper bounds (seconds) of the run duration histogram's buckets.
DURATION_BOUNDS: tuple[float, ...] = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class TrailCollector(Collector):
    """Collects tasktrail's metrics from ``store`` on each scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """The metric families, read from the database now."""
        yield self._tasks()
        yield from self._transitions()
        yield self._durations()
        yield self._queue_lag()

    def _tasks(self) -> Metric:
        gauge = GaugeMetricFamily(
            "tasktrail_tasks", "Tasks by status and queue.", labels=["status", "queue"]
        )
        counts = self.store.queue_status_counts()
        queues = sorted({queue for queue, _ in counts})
        for queue in queues:
            for status in Status:
                gauge.add_metric([status.value, queue], counts.get((queue, status), 0))
        return gauge

    def _transitions(self) -> Iterator[Metric]:
        transitions = CounterMetricFamily(
            "tasktrail_transitions",
            "State machine transitions recorded, by transition name and target status.",
            labels=["transition", "status"],
        )
        retries = CounterMetricFamily(
            "tasktrail_retries",
            "Runs queued again: kind=manual (retry) or automatic (backoff after a failure, "
            "or after a lost worker).",
            labels=["kind"],
        )
        lost = CounterMetricFamily(
            "tasktrail_lost_worker_recoveries",
            "Running tasks taken back from a worker that stopped heartbeating.",
        )
        totals = {"manual": 0, "automatic": 0}
        recoveries = 0
        for row in self.store.transition_counts():
            status = row.status.value if row.status else ""
            transitions.add_metric([row.transition, status], row.count)
            if row.transition == "retry":
                totals["manual"] += row.count
            elif row.transition == "back_off" or (
                row.transition == "lose" and row.status is Status.SCHEDULED
            ):
                totals["automatic"] += row.count
            if row.transition == "lose":
                recoveries += row.count
        for kind, count in totals.items():
            retries.add_metric([kind], count)
        lost.add_metric([], recoveries)
        yield transitions
        yield retries
        yield lost

    def _durations(self) -> Metric:
        histogram = self.store.run_duration_histogram(DURATION_BOUNDS)
        buckets = [
            (_bound(bound), float(count))
            for bound, count in zip(histogram.bounds, histogram.buckets, strict=True)
        ]
        buckets.append(("+Inf", float(histogram.count)))
        return HistogramMetricFamily(
            "tasktrail_run_duration_seconds",
            "Duration of the last run of each finished task (started_at to completed_at).",
            buckets=buckets,
            sum_value=histogram.total,
        )

    def _queue_lag(self) -> Metric:
        gauge = GaugeMetricFamily(
            "tasktrail_queue_lag_seconds",
            "Age of the oldest queued task, by queue (0 when none waits).",
            labels=["queue"],
        )
        now = self.store.clock()
        oldest = self.store.oldest_queued()
        queues = sorted({queue for queue, _ in self.store.queue_status_counts()} | set(oldest))
        for queue in queues:
            waited = (now - oldest[queue]).total_seconds() if queue in oldest else 0.0
            gauge.add_metric([queue], max(waited, 0.0))
        return gauge


def _bound(value: float) -> str:
    return repr(float(value))


def exposition(store: Store) -> bytes:
    """The Prometheus text exposition of tasktrail's metrics for ``store``, read now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TrailCollector(store))
    return generate_latest(registry)
