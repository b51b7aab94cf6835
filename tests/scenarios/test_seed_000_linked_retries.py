"""Seed 000: a roadmap stored only its creation task id. Retry tasks were never persisted
or linked, so "is anything still running for this roadmap?" looked at the finished
creation task and flagged live work as stale. With tasktrail every retry is a row, linked
to the roadmap (and to its concept), and the roadmap's tasks are one query."""

from __future__ import annotations

import threading

from tasktrail import Link, Status, TaskContext, Trail


def test_creation_and_two_retries_are_all_rows_linked_to_the_roadmap(trail: Trail) -> None:
    release = threading.Event()
    running = threading.Event()

    @trail.task("roadmap.create")
    def create(ctx: TaskContext, roadmap_id: str) -> dict[str, str]:
        return {"roadmap_id": roadmap_id}

    @trail.task("roadmap.retry_content")
    def retry_content(ctx: TaskContext, roadmap_id: str, concept_id: str, kind: str) -> None:
        if concept_id == "c7":
            running.set()
            assert release.wait(10)

    creation = trail.submit(
        "roadmap.create", {"roadmap_id": "r1"}, links=[Link("roadmap", "r1", role="creation")]
    )
    trail.run_pending()
    first_retry = trail.submit(
        "roadmap.retry_content",
        {"roadmap_id": "r1", "concept_id": "c3", "kind": "quiz"},
        links=[Link("roadmap", "r1", role="retry_quiz"), Link("concept", "c3")],
    )
    trail.run_pending()
    second_retry = trail.submit(
        "roadmap.retry_content",
        {"roadmap_id": "r1", "concept_id": "c7", "kind": "tutorial"},
        links=[Link("roadmap", "r1", role="retry_tutorial"), Link("concept", "c7")],
    )
    worker = threading.Thread(target=trail.run_pending)
    worker.start()
    try:
        assert running.wait(10)

        everything = trail.tasks_for("roadmap", "r1")
        active = trail.tasks_for("roadmap", "r1", active=True)
        finished = trail.tasks_for("roadmap", "r1", active=False)
    finally:
        release.set()
        worker.join(10)

    assert [(t.id, t.role) for t in everything] == [
        (second_retry.id, "retry_tutorial"),
        (first_retry.id, "retry_quiz"),
        (creation.id, "creation"),
    ]
    assert [(t.id, t.status) for t in active] == [(second_retry.id, Status.RUNNING)]
    assert {t.id for t in finished} == {first_retry.id, creation.id}
    assert [t.id for t in trail.tasks_for("concept", "c7")] == [second_retry.id]
    assert {
        (link.resource_type, link.resource_id) for link in trail.get(second_retry.id).links
    } == {
        ("roadmap", "r1"),
        ("concept", "c7"),
    }


def test_linking_the_same_resource_twice_keeps_one_link(trail: Trail) -> None:
    @trail.task("roadmap.create")
    def create(ctx: TaskContext) -> None:
        return None

    task = trail.submit("roadmap.create", links=[Link("roadmap", "r1", role="creation")])
    trail.link(task.id, Link("roadmap", "r1", role="other"), Link("user", "u1"))
    trail.link(task.id, Link("user", "u1"))

    links = {(x.resource_type, x.resource_id, x.role) for x in trail.get(task.id).links}
    assert links == {("roadmap", "r1", "creation"), ("user", "u1", None)}
