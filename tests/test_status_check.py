"""``Trail.status_check`` and ``@trail.stale_probe``: which items claiming to be in progress
no active task covers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tasktrail import InvalidInput, Link, Trail


@pytest.fixture
def roadmap(trail: Trail) -> dict[str, Any]:
    """A roadmap whose probe reports c1 and c2 generating, with a task function to link."""
    state: dict[str, Any] = {"claims": [
        {"item": "c1", "content_type": "tutorial", "status": "generating"},
        {"item": "c2", "content_type": "quiz", "status": "pending"},
    ]}  # fmt: skip

    @trail.task("noop")
    def noop(ctx: object) -> None:
        return None

    @trail.stale_probe("roadmap", item_type="concept")
    def probe(roadmap_id: str) -> list[dict[str, Any]]:
        return list(state["claims"]) if roadmap_id == "r1" else []

    return state


def stale_ids(trail: Trail) -> list[str]:
    return [entry["item"] for entry in trail.status_check("roadmap", "r1").stale_items]


def test_no_active_task_leaves_every_claim_stale(trail: Trail, roadmap: dict[str, Any]) -> None:
    finished = trail.submit("noop", links=[Link("roadmap", "r1", role="creation")])
    trail.run_pending()
    assert trail.get(finished.id).status == "completed"

    check = trail.status_check("roadmap", "r1")
    assert check.has_active_task is False
    assert check.active_tasks == ()
    assert list(check.stale_items) == roadmap["claims"]


def test_a_task_on_the_whole_resource_covers_every_item(
    trail: Trail, roadmap: dict[str, Any]
) -> None:
    creation = trail.submit("noop", links=[Link("roadmap", "r1", role="creation")])
    check = trail.status_check("roadmap", "r1")
    assert [(t.id, t.role) for t in check.active_tasks] == [(creation.id, "creation")]
    assert check.stale_items == ()


def test_a_single_item_retry_covers_only_its_item(trail: Trail, roadmap: dict[str, Any]) -> None:
    retry = trail.submit(
        "noop",
        links=[Link("roadmap", "r1", role="retry_tutorial"), Link("concept", "c1")],
    )
    check = trail.status_check("roadmap", "r1")
    assert [t.id for t in check.active_tasks] == [retry.id]
    assert [e["item"] for e in check.stale_items] == ["c2"]

    trail.cancel(retry.id, reason="killed")  # a killed retry covers nothing any more
    assert stale_ids(trail) == ["c1", "c2"]


def test_a_task_linked_only_to_the_item_covers_it(trail: Trail, roadmap: dict[str, Any]) -> None:
    trail.submit("noop", links=[Link("concept", "c2")])
    assert stale_ids(trail) == ["c1"]


def test_an_item_may_name_its_own_type(trail: Trail) -> None:
    @trail.task("noop")
    def noop(ctx: object) -> None:
        return None

    @trail.stale_probe("course")
    def probe(course_id: str) -> list[dict[str, Any]]:
        return [{"item": "q1", "type": "quiz"}, {"item": "v1", "type": "video"}]

    trail.submit("noop", links=[Link("course", "k1"), Link("quiz", "q1")])
    trail.submit("noop", links=[Link("video", "v1")])
    assert trail.status_check("course", "k1").stale_items == ()


def test_without_a_probe_there_are_no_stale_items(trail: Trail) -> None:
    check = trail.status_check("playlist", "p1")
    assert (check.has_active_task, check.active_tasks, check.stale_items) == (False, (), ())


def test_a_probe_answering_nonsense_is_refused(trail: Trail) -> None:
    @trail.stale_probe("roadmap", item_type="concept")
    def probe(roadmap_id: str) -> Any:
        return [{"concept": "c1"}]

    with pytest.raises(InvalidInput, match="'item' string"):
        trail.status_check("roadmap", "r1")

    @trail.stale_probe("course")
    def untyped(course_id: str) -> Any:
        return [{"item": "c1"}]

    with pytest.raises(InvalidInput, match="no 'type'"):
        trail.status_check("course", "k1")


def test_async_probe_and_async_twin(trail: Trail, roadmap: dict[str, Any]) -> None:
    @trail.stale_probe("course", item_type="lesson")
    async def probe(course_id: str) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return [{"item": "l1", "status": "generating"}]

    check = asyncio.run(trail.status_check_async("course", "k1"))
    assert [e["item"] for e in check.stale_items] == ["l1"]
    assert trail.status_check("course", "k1").stale_items == check.stale_items
    sync_probe = asyncio.run(trail.status_check_async("roadmap", "r1"))
    assert [e["item"] for e in sync_probe.stale_items] == ["c1", "c2"]


def test_a_retry_that_finishes_while_the_probe_runs_still_covers_its_item(trail: Trail) -> None:
    # The probe reads the domain (c1 generating), then the retry completes before the
    # probe returns: the item is not stale, since its retry was active when it was read.
    @trail.task("noop")
    def noop(ctx: object) -> None:
        return None

    retry = trail.submit(
        "noop", links=[Link("roadmap", "r1", role="retry_tutorial"), Link("concept", "c1")]
    )

    @trail.stale_probe("roadmap", item_type="concept")
    def probe(roadmap_id: str) -> list[dict[str, Any]]:
        claims = [{"item": "c1", "status": "generating"}]
        trail.run_pending()  # the retry finishes meanwhile
        return claims

    check = trail.status_check("roadmap", "r1")
    assert trail.get(retry.id).status == "completed"
    assert check.stale_items == ()
    assert check.active_tasks == ()  # what is active now
    # Later, with the retry over and the claim still there, the item is stale.
    assert [e["item"] for e in trail.status_check("roadmap", "r1").stale_items] == ["c1"]


def test_the_async_twin_counts_a_retry_that_finished_during_an_async_probe(
    trail: Trail,
) -> None:
    @trail.task("noop")
    def noop(ctx: object) -> None:
        return None

    retry = trail.submit(
        "noop", links=[Link("roadmap", "r1", role="retry_tutorial"), Link("concept", "c1")]
    )

    @trail.stale_probe("roadmap", item_type="concept")
    async def probe(roadmap_id: str) -> list[dict[str, Any]]:
        await asyncio.to_thread(trail.run_pending)  # the retry finishes meanwhile
        return [{"item": "c1", "status": "generating"}]

    check = asyncio.run(trail.status_check_async("roadmap", "r1"))
    assert trail.get(retry.id).status == "completed"
    assert check.stale_items == ()
    later = asyncio.run(trail.status_check_async("roadmap", "r1"))
    assert [e["item"] for e in later.stale_items] == ["c1"]


def test_a_retry_that_starts_while_the_probe_runs_covers_its_item(trail: Trail) -> None:
    @trail.task("noop")
    def noop(ctx: object) -> None:
        return None

    @trail.stale_probe("roadmap", item_type="concept")
    def probe(roadmap_id: str) -> list[dict[str, Any]]:
        trail.submit(
            "noop", links=[Link("roadmap", "r1", role="retry_tutorial"), Link("concept", "c1")]
        )
        return [{"item": "c1", "status": "pending"}]

    check = trail.status_check("roadmap", "r1")
    assert check.stale_items == ()
    assert len(check.active_tasks) == 1
