"""``listen_for_queued``: PostgreSQL tells listeners about queued and scheduled tasks; on a
SQLite file, every commit says "look again"."""

from __future__ import annotations

import queue
from datetime import timedelta

from tasktrail import Trail
from tasktrail.store.listen import listen_for_queued


def test_listener_hears_tasks_queued_by_another_connection(database_url: str) -> None:
    heard: queue.SimpleQueue[str] = queue.SimpleQueue()
    listening = Trail(database_url, auto_migrate=True)
    submitting = Trail(database_url)

    @submitting.task("listen.noop", queue="reports")
    def noop(ctx: object) -> None:
        return None

    listener = listen_for_queued(listening.engine, heard.put, queues={"reports"})
    try:
        assert listener is not None
        assert heard.get(timeout=5) == ""  # the look-once after (re)connecting
        if database_url.startswith("sqlite"):
            # No queue names: whatever commits is a reason to look again.
            submitting.submit("listen.noop", queue="other")
            assert heard.get(timeout=5) == ""
            return
        submitting.submit("listen.noop", run=False)  # created, not queued: no notification
        submitting.submit("listen.noop", queue="other")  # a queue it does not listen to
        submitting.submit("listen.noop")
        assert heard.get(timeout=5) == "reports"
        # Scheduled, on any queue: every listener hears "" and re-reads the due times.
        later = submitting.store.clock() + timedelta(minutes=5)
        submitting.submit("listen.noop", queue="other", run_after=later)
        assert heard.get(timeout=5) == ""
        assert heard.empty()
    finally:
        if listener is not None:
            listener.close()
        listening.close()
        submitting.close()
