"""The store's aggregate reads for the dashboard, on both databases."""

from __future__ import annotations

from tasktrail import Link, TaskContext, Trail
from tasktrail.states import Status


def test_status_counts_are_exact_up_to_the_cap_and_say_more_past_it(trail: Trail) -> None:
    @trail.task("count.me")
    def count_me(ctx: TaskContext) -> None:
        return None

    for _ in range(5):
        trail.submit("count.me", links=[Link("project", "p1")])
    for _ in range(2):
        trail.submit("count.me", run=False)

    exact = trail.store.status_counts()
    assert exact == {Status.QUEUED: 5, Status.CREATED: 2}
    assert trail.store.status_counts(cap=10) == exact
    # Past the cap a count stops at cap + 1: "more than 3".
    assert trail.store.status_counts(cap=3) == {Status.QUEUED: 4, Status.CREATED: 2}
    # Filters apply before the cap.
    assert trail.store.status_counts(resource=("project", "p1"), cap=3) == {Status.QUEUED: 4}
    assert trail.store.status_counts(name="other", cap=3) == {}
