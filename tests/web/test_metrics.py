"""``/metrics`` after a scripted run equals what the database says, on each backend."""

from __future__ import annotations

from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tasktrail import Trail
from tasktrail.serve import build_app
from tasktrail.states import Status
from tests.support.server import serve


def scrape(http: httpx.Client) -> dict[str, list[Sample]]:
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def scripted_run(trail: Trail) -> None:
    """Completed, failed, manually retried, lost and still-queued tasks."""
    for value in range(3):
        trail.submit("web.echo", {"value": value})
    failing = [trail.submit("web.fail", {}) for _ in range(2)]
    trail.submit("web.echo", {}, queue="slow")
    trail.run_pending(queues=["default"])
    trail.retry(failing[0].id)
    trail.run_pending(queues=["default"])
    lost = trail.submit("web.echo", {}, max_attempts=2)
    assert trail.store.claim(worker="gone-away", queues=["default"]) is not None
    assert [t.id for t in trail.store.reap_lost(0)] == [lost.id]


def test_counters_equal_the_database_after_a_scripted_run(web_trail: Trail) -> None:
    scripted_run(web_trail)
    with (
        serve(build_app(web_trail, token="")) as url,
        httpx.Client(base_url=url, timeout=20) as http,
    ):
        metrics = scrape(http)

    tasks = web_trail.list_tasks(limit=500).items
    by_status_queue = Counter((t.status.value, t.queue) for t in tasks)
    gauge = {(s.labels["status"], s.labels["queue"]): s.value for s in metrics["tasktrail_tasks"]}
    assert {k: v for k, v in gauge.items() if v} == by_status_queue
    assert gauge[("queued", "slow")] == 1

    events = [e for e in web_trail.events(limit=10_000) if e.type == "transition"]
    expected = Counter(
        (e.data["transition"], e.to_status.value if e.to_status else "") for e in events
    )
    transitions = {
        (s.labels["transition"], s.labels["status"]): s.value
        for s in metrics["tasktrail_transitions"]
        if s.name == "tasktrail_transitions_total"
    }
    assert transitions == expected
    assert transitions[("fail", "failed")] == 3
    assert transitions[("complete", "completed")] == 3

    # Counted from the database's events: a manual retry is a "retry" transition; an
    # automatic one a back-off, or a lost run sent back to scheduled.
    named = Counter(e.data["transition"] for e in events)
    lost_back = sum(
        1 for e in events if e.data["transition"] == "lose" and e.to_status is Status.SCHEDULED
    )
    in_database = {"manual": named["retry"], "automatic": named["back_off"] + lost_back}
    assert in_database["manual"] >= 1 and in_database["automatic"] >= 1  # the script made both
    retries = {
        s.labels["kind"]: s.value for s in metrics["tasktrail_retries"] if s.name.endswith("_total")
    }
    assert retries == in_database
    (lost,) = [s for s in metrics["tasktrail_lost_worker_recoveries"] if s.name.endswith("_total")]
    assert named["lose"] >= 1
    assert lost.value == named["lose"]

    runs = [(t.started_at, t.completed_at) for t in tasks if t.status.is_terminal]
    ran = [(start, end) for start, end in runs if start is not None and end is not None]
    histogram = {s.name: s for s in metrics["tasktrail_run_duration_seconds"]}
    assert histogram["tasktrail_run_duration_seconds_count"].value == len(ran) == 5
    total = sum((end - start).total_seconds() for start, end in ran)
    assert abs(histogram["tasktrail_run_duration_seconds_sum"].value - total) < 0.01

    lag = {s.labels["queue"]: s.value for s in metrics["tasktrail_queue_lag_seconds"]}
    assert lag["default"] == 0
    assert lag["slow"] > 0
