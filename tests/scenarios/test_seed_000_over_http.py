"""Seed 000's testing checklist, over HTTP, against the demo roadmap app.

The seed's bugs: single-concept retries were never persisted nor linked to their roadmap,
so the roadmap's status check looked only at the creation task and reported content as
stale while a retry was generating it. Here every retry is a task linked to the roadmap and
the concept, and the status check asks which claimed-in-progress content no active task
covers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tasktrail import Trail
from tasktrail.api import create_app
from tasktrail.demo import RoadmapApp
from tasktrail.feed import Feed
from tests.support.fixtures import KEEPALIVE, BackgroundWorker
from tests.support.polling import eventually
from tests.support.server import serve
from tests.support.streams import has, read_sse

CONCEPTS = ["python-basics-1", "python-basics-2", "python-basics-3"]
FAILS_ON_CREATION = ("python-basics-2", "quiz")
CRASHING_RETRY = ("python-basics-3", "resources")


@dataclass
class Story:
    """The roadmap app served over HTTP, and a client of it."""

    http: httpx.Client
    url: str
    trail: Trail

    def create_roadmap(self, roadmap_id: str = "r1") -> str:
        response = self.http.post(
            f"/roadmaps/{roadmap_id}", params={"topic": "Python Basics", "concepts": 3}
        )
        assert response.status_code == 201, response.text
        task_id: str = response.json()["task_id"]
        return task_id

    def retry(self, concept: str, content: str, roadmap_id: str = "r1") -> str:
        response = self.http.post(f"/roadmaps/{roadmap_id}/concepts/{concept}/{content}/retry")
        assert response.status_code == 201, response.text
        task_id: str = response.json()["task_id"]
        return task_id

    def task(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = self.http.get(f"/api/v1/tasks/{task_id}").json()
        return task

    def wait_status(self, task_id: str, *statuses: str) -> dict[str, Any]:
        return eventually(lambda: t if (t := self.task(task_id))["status"] in statuses else None)

    def status_check(self, roadmap_id: str = "r1") -> dict[str, Any]:
        check: dict[str, Any] = self.http.get(
            f"/api/v1/resources/roadmap/{roadmap_id}/status-check"
        ).json()
        return check

    def linked(self, roadmap_id: str = "r1") -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self.http.get(
            f"/api/v1/resources/roadmap/{roadmap_id}/tasks"
        ).json()
        return tasks

    def content(self, roadmap_id: str = "r1") -> dict[str, dict[str, str]]:
        roadmap: dict[str, dict[str, str]] = self.http.get(f"/roadmaps/{roadmap_id}").json()
        return roadmap


@pytest.fixture
def story(trail: Trail) -> Iterator[Story]:
    roadmaps = RoadmapApp(
        trail,
        item_seconds=0.0,
        retry_seconds=0.6,
        failing=lambda concept, content: (concept, content) == FAILS_ON_CREATION,
        failing_retries=lambda concept, content: (concept, content) == CRASHING_RETRY,
    )
    app = create_app(trail, token="", feed=Feed(trail.store, keepalive=KEEPALIVE))
    roadmaps.mount(app)
    with serve(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        yield Story(http, url, trail)


def created_roadmap(story: Story) -> str:
    task_id = story.create_roadmap()
    with BackgroundWorker(story.trail):
        story.wait_status(task_id, "partial_failure")
    return task_id


# -- Retry Endpoints -------------------------------------------------------------------------


def test_each_retry_endpoint_creates_a_task_record_linked_to_roadmap_and_concept(
    story: Story,
) -> None:
    creation = created_roadmap(story)
    concept = FAILS_ON_CREATION[0]

    retries = {
        content: story.retry(concept, content) for content in ("tutorial", "resources", "quiz")
    }

    for content, task_id in retries.items():
        task = story.task(task_id)  # persisted: it can be read back
        assert task["name"] == "roadmap.retry_content"
        assert task["status"] == "queued"
        assert task["params"] == {
            "roadmap_id": "r1",
            "concept_id": concept,
            "content_type": content,
        }
        assert sorted((link["type"], link["id"], link["role"]) for link in task["links"]) == [
            ("concept", concept, None),
            ("roadmap", "r1", f"retry_{content}"),
        ]
    assert [(t["id"], t["role"]) for t in story.linked()] == [
        (retries["quiz"], "retry_quiz"),
        (retries["resources"], "retry_resources"),
        (retries["tutorial"], "retry_tutorial"),
        (creation, "creation"),
    ]


def test_retry_tasks_record_completion_and_failure(story: Story) -> None:
    created_roadmap(story)
    fixed = story.retry(*FAILS_ON_CREATION)
    crashing = story.retry(*CRASHING_RETRY)

    with BackgroundWorker(story.trail):
        done = story.wait_status(fixed, "completed", "failed")
        crashed = story.wait_status(crashing, "completed", "failed")

    assert (done["status"], done["completed_at"] is not None, done["error"]) == (
        "completed", True, None,
    )  # fmt: skip
    assert crashed["status"] == "failed"
    assert crashed["error"] == "RuntimeError: the model crashed regenerating resources"
    assert story.content()[FAILS_ON_CREATION[0]]["quiz"] == "completed"
    history = story.http.get(f"/api/v1/tasks/{crashing}/events").json()
    assert [e["status"] for e in history if e["type"] == "transition"] == [
        "queued", "running", "failed",
    ]  # fmt: skip


def test_asking_twice_while_a_retry_is_active_answers_that_retry(story: Story) -> None:
    created_roadmap(story)

    first = story.retry(*FAILS_ON_CREATION)
    again = story.retry(*FAILS_ON_CREATION)

    assert again == first
    retries = [t["id"] for t in story.linked() if t["role"] == "retry_quiz"]
    assert retries == [first]


def test_a_content_retried_after_its_retry_ended_is_retried_anew(story: Story) -> None:
    created_roadmap(story)
    first = story.retry(*CRASHING_RETRY)
    with BackgroundWorker(story.trail):
        story.wait_status(first, "failed")

    second = story.retry(*CRASHING_RETRY)  # the user tries again after the crash

    assert second != first
    assert story.task(second)["status"] == "queued"
    assert story.content()[CRASHING_RETRY[0]][CRASHING_RETRY[1]] == "pending"
    check = story.status_check()  # pending, and covered by the new retry: not stale
    assert [t["id"] for t in check["active_tasks"]] == [second]
    assert check["stale_items"] == []
    with BackgroundWorker(story.trail):
        story.wait_status(second, "failed")  # this model always crashes on it
    third = story.retry(*CRASHING_RETRY)
    assert third not in (first, second)
    retries = [t["id"] for t in story.linked() if t["role"] == "retry_resources"]
    assert retries == [third, second, first]


# -- Stale Status Detection ------------------------------------------------------------------


def test_no_false_positive_while_a_retry_task_is_active(story: Story) -> None:
    created_roadmap(story)
    retry = story.retry(*FAILS_ON_CREATION)

    queued = story.status_check()  # the content says "pending"; its retry is queued
    assert queued["has_active_task"] is True
    assert [t["id"] for t in queued["active_tasks"]] == [retry]
    assert queued["stale_items"] == []

    with BackgroundWorker(story.trail):
        story.wait_status(retry, "running")
        assert story.content()[FAILS_ON_CREATION[0]]["quiz"] == "generating"
        running = story.status_check()
        assert running["has_active_task"] is True
        assert running["active_tasks"][0]["role"] == "retry_quiz"
        assert running["stale_items"] == []
        story.wait_status(retry, "completed")

    assert story.status_check() == {
        "resource_type": "roadmap",
        "resource_id": "r1",
        "has_active_task": False,
        "active_tasks": [],
        "stale_items": [],
    }


def test_stale_content_is_identified_when_no_task_is_active(story: Story) -> None:
    created_roadmap(story)
    crashing = story.retry(*CRASHING_RETRY)
    with BackgroundWorker(story.trail):
        story.wait_status(crashing, "failed")

    check = story.status_check()
    assert check["has_active_task"] is False
    assert check["stale_items"] == [
        {"item": CRASHING_RETRY[0], "content_type": CRASHING_RETRY[1], "status": "generating"}
    ]


def test_status_check_returns_every_active_task(story: Story) -> None:
    created_roadmap(story)
    first = story.retry("python-basics-1", "tutorial")
    second = story.retry("python-basics-2", "quiz")
    other_roadmap = story.create_roadmap("r2")

    check = story.status_check()
    assert [t["id"] for t in check["active_tasks"]] == [second, first]
    assert [t["role"] for t in check["active_tasks"]] == ["retry_quiz", "retry_tutorial"]
    assert other_roadmap not in {t["id"] for t in check["active_tasks"]}
    assert check["stale_items"] == []


# -- End-to-End ------------------------------------------------------------------------------


def test_end_to_end_create_retry_check_switch_tabs_and_kill(story: Story) -> None:
    # Create roadmap → task linked.
    creation = created_roadmap(story)
    assert [(t["id"], t["role"]) for t in story.linked()] == [(creation, "creation")]
    assert story.content()[FAILS_ON_CREATION[0]]["quiz"] == "failed"

    # The user watches the roadmap's events in a tab.
    params = {"resource_type": "roadmap", "resource_id": "r1"}
    before = read_sse(story.url, params=params, stop=has("transition", status="partial_failure"))

    # Retry tutorial → new task created and linked.
    retry = story.retry(FAILS_ON_CREATION[0], "quiz")
    assert story.linked()[0]["id"] == retry
    assert story.linked()[0]["role"] == "retry_quiz"

    with BackgroundWorker(story.trail):
        # Check status during retry → no false positive.
        story.wait_status(retry, "running")
        during = story.status_check()
        assert (during["has_active_task"], during["stale_items"]) == (True, [])

        # Switch tabs and return → the stream resumes where it left off, status accurate.
        after = read_sse(
            story.url,
            params=params,
            headers={"Last-Event-ID": str(before[-1]["id"])},
            stop=has("transition", task_id=retry, status="completed"),
        )
    seen = [e["id"] for e in before + after]
    history = [e.id for e in story.trail.events(resource=("roadmap", "r1"))]
    assert seen == history[: len(seen)]  # nothing lost, nothing twice, in order
    assert {e["task_id"] for e in after} == {retry}
    back = story.status_check()
    assert (back["has_active_task"], back["stale_items"]) == (False, [])
    assert story.content()[FAILS_ON_CREATION[0]]["quiz"] == "completed"

    # Task killed → stale status detected.
    doomed = story.retry("python-basics-1", "tutorial")
    with BackgroundWorker(story.trail):
        story.wait_status(doomed, "running")
        eventually(lambda: story.content()["python-basics-1"]["tutorial"] == "generating")
        story.http.post(f"/api/v1/tasks/{doomed}/cancel", json={"reason": "killed"})
        story.wait_status(doomed, "cancelled")
    killed = story.status_check()
    assert killed["has_active_task"] is False
    assert killed["stale_items"] == [
        {"item": "python-basics-1", "content_type": "tutorial", "status": "generating"}
    ]
