"""A built-in example app, mirroring seed 000's roadmaps.

A roadmap has concepts; each concept has a tutorial, resources and a quiz, each with its own
status (``pending`` → ``generating`` → ``completed`` | ``failed``) kept by the app, not by
tasktrail. Creating a roadmap is one task whose items are every concept's contents; some
fail on purpose. Retrying one concept's content is a task of its own, linked to the roadmap
(role ``retry_<content>``) *and* to the concept, so the roadmap's status check sees it. A
stale probe reports contents stuck in ``pending``/``generating``.

``tasktrail demo`` serves it, and runs its tasks with the embedded worker. The roadmaps live
in that process's memory (a real app keeps them in its own tables), so the demo cannot run
in other commands: a worker process elsewhere would not find them.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException

from tasktrail.context import TaskContext
from tasktrail.records import Link, TaskRecord
from tasktrail.trail import Trail

CONTENT_TYPES = ("tutorial", "resources", "quiz")
IN_PROGRESS = ("pending", "generating")


def fails_first_time(concept: str, content_type: str) -> bool:
    """Whether the demo's model "fails" this content on a roadmap's creation (always the
    same pairs, so every demo run shows the same partial failure)."""
    return zlib.crc32(f"{concept}/{content_type}".encode()) % 5 == 0


class Roadmaps:
    """The demo's domain: roadmaps, their concepts and each content's status, in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roadmaps: dict[str, dict[str, dict[str, str]]] = {}

    def create(self, roadmap_id: str, concepts: list[str]) -> None:
        """Record a roadmap whose contents are all pending."""
        with self._lock:
            self._roadmaps[roadmap_id] = {
                c: dict.fromkeys(CONTENT_TYPES, "pending") for c in concepts
            }

    def set(self, roadmap_id: str, concept: str, content_type: str, status: str) -> None:
        """Set one content's status."""
        with self._lock:
            self._roadmaps[roadmap_id][concept][content_type] = status

    def get(self, roadmap_id: str) -> dict[str, dict[str, str]]:
        """A copy of a roadmap's concepts and their contents' statuses."""
        with self._lock:
            if roadmap_id not in self._roadmaps:
                raise KeyError(roadmap_id)
            return {c: dict(contents) for c, contents in self._roadmaps[roadmap_id].items()}

    def in_progress(self, roadmap_id: str) -> list[dict[str, Any]]:
        """Contents that claim to be pending or generating."""
        try:
            roadmap = self.get(roadmap_id)
        except KeyError:
            return []
        return [
            {"item": concept, "content_type": kind, "status": status}
            for concept, contents in roadmap.items()
            for kind, status in contents.items()
            if status in IN_PROGRESS
        ]


class RoadmapApp:
    """The demo app on ``trail``: its task functions, its stale probe and its endpoints.

    ``item_seconds`` is how long each generated content takes on creation,
    ``retry_seconds`` how long a single-content retry takes; ``failing(concept, content)``
    picks the contents that fail on a roadmap's first attempt, ``failing_retries`` those
    whose retry crashes midway (leaving the content "generating", as a killed run would).
    """

    def __init__(
        self,
        trail: Trail,
        *,
        item_seconds: float = 0.3,
        retry_seconds: float = 1.0,
        failing: Callable[[str, str], bool] = fails_first_time,
        failing_retries: Callable[[str, str], bool] = lambda concept, content: False,
    ) -> None:
        self.trail = trail
        self.roadmaps = Roadmaps()
        self.item_seconds = item_seconds
        self.retry_seconds = retry_seconds
        self.failing = failing
        self.failing_retries = failing_retries
        self._register()

    def _register(self) -> None:
        trail, roadmaps = self.trail, self.roadmaps

        @trail.task("roadmap.create", max_attempts=1)
        def create_roadmap(
            ctx: TaskContext, roadmap_id: str, topic: str, concepts: int = 4
        ) -> dict[str, Any]:
            names = concept_names(topic, concepts)
            ctx.progress(5, "outline")
            ctx.log("info", "outlined roadmap", {"concepts": names})
            keys = [f"{name}/{kind}" for name in names for kind in CONTENT_TYPES]
            for done, item in enumerate(ctx.items(keys), start=1):
                concept, kind = item.key.split("/")
                roadmaps.set(roadmap_id, concept, kind, "generating")
                outcome = "failed"  # stays so when the block fails (the item swallows it)
                with item:
                    time.sleep(self.item_seconds)
                    if ctx.attempt == 1 and self.failing(concept, kind):
                        raise RuntimeError(f"the model returned no {kind} for {concept}")
                    outcome = "completed"
                roadmaps.set(roadmap_id, concept, kind, outcome)
                ctx.progress(5 + 95 * done / len(keys), f"content {item.key}")
            return {"roadmap_id": roadmap_id, "concepts": names}

        @trail.task("roadmap.retry_content", max_attempts=1)
        def retry_content(
            ctx: TaskContext, roadmap_id: str, concept_id: str, content_type: str
        ) -> dict[str, Any]:
            # Like the seed's retry endpoints, the content says "generating" while the task
            # runs; a run killed midway leaves it so, and only the status check notices.
            roadmaps.set(roadmap_id, concept_id, content_type, "generating")
            steps = 10
            for step in range(steps):
                ctx.progress(100 * step / steps, f"regenerating {content_type}")
                time.sleep(self.retry_seconds / steps)
                if step == steps // 2 and self.failing_retries(concept_id, content_type):
                    raise RuntimeError(f"the model crashed regenerating {content_type}")
            roadmaps.set(roadmap_id, concept_id, content_type, "completed")
            return {
                "roadmap_id": roadmap_id,
                "concept_id": concept_id,
                "content_type": content_type,
            }

        @trail.stale_probe("roadmap", item_type="concept")
        def probe(roadmap_id: str) -> list[dict[str, Any]]:
            return roadmaps.in_progress(roadmap_id)

    # -- what the app's own endpoints do ------------------------------------------------

    def create_roadmap(self, roadmap_id: str, topic: str, concepts: int = 4) -> TaskRecord:
        """Record the roadmap and submit its creation task, linked to it."""
        self.roadmaps.create(roadmap_id, concept_names(topic, concepts))
        return self.trail.submit(
            "roadmap.create",
            {"roadmap_id": roadmap_id, "topic": topic, "concepts": concepts},
            links=[Link("roadmap", roadmap_id, role="creation")],
            description=f"Generate the {topic} roadmap",
        )

    def retry_content(self, roadmap_id: str, concept_id: str, content_type: str) -> TaskRecord:
        """Seed 000's single-concept retry, done right: a persisted task, linked to the
        roadmap and to the concept. Asking again while a retry of the content is active
        answers that retry; once it has ended, asking again retries anew."""
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"content_type must be one of {', '.join(CONTENT_TYPES)}")
        roadmap = self.roadmaps.get(roadmap_id)
        if concept_id not in roadmap:
            raise KeyError(concept_id)
        params = {"roadmap_id": roadmap_id, "concept_id": concept_id, "content_type": content_type}
        previous = self._latest_retry(params)
        if previous is not None and previous.status.is_active:
            return previous
        self.roadmaps.set(roadmap_id, concept_id, content_type, "pending")
        # A dedupe key is taken for good, so it names the retry this one follows: requests
        # racing after the same one make one task, and each later retry has a key of its own.
        follows = previous.id if previous is not None else "none"
        return self.trail.submit(
            "roadmap.retry_content",
            params,
            links=[
                Link("roadmap", roadmap_id, role=f"retry_{content_type}"),
                Link("concept", concept_id),
            ],
            description=f"Regenerate the {content_type} of {concept_id}",
            dedupe_key=f"roadmap.retry_content:{roadmap_id}/{concept_id}/{content_type}"
            f":after:{follows}",
        )

    def _latest_retry(self, params: dict[str, str]) -> TaskRecord | None:
        """The newest retry of the content ``params`` name, if it has had any."""
        for task in self.trail.tasks_for("concept", params["concept_id"]):
            if task.name == "roadmap.retry_content" and task.params == params:
                return task
        return None

    def router(self) -> APIRouter:
        """The app's own endpoints: create a roadmap, retry one content, read a roadmap."""
        api = APIRouter(prefix="/roadmaps", tags=["demo app"])

        @api.post("/{roadmap_id}", status_code=201)
        async def create(roadmap_id: str, topic: str, concepts: int = 4) -> dict[str, str]:
            """Create a roadmap; answers its creation task's id."""
            if not 1 <= concepts <= 20:
                raise HTTPException(422, "concepts must be from 1 to 20")
            return {"task_id": self.create_roadmap(roadmap_id, topic, concepts).id}

        @api.post("/{roadmap_id}/concepts/{concept_id}/{content_type}/retry", status_code=201)
        async def retry(roadmap_id: str, concept_id: str, content_type: str) -> dict[str, str]:
            """Retry one concept's content; answers the retry task's id."""
            try:
                return {"task_id": self.retry_content(roadmap_id, concept_id, content_type).id}
            except KeyError as exc:
                raise HTTPException(404, f"no such roadmap or concept: {exc}") from None
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None

        @api.get("/{roadmap_id}")
        async def read(roadmap_id: str) -> dict[str, dict[str, str]]:
            """The roadmap's concepts and their contents' statuses."""
            try:
                return self.roadmaps.get(roadmap_id)
            except KeyError:
                raise HTTPException(404, f"no roadmap {roadmap_id!r}") from None

        return api

    def mount(self, app: FastAPI) -> None:
        """Add the app's own endpoints to ``app``."""
        app.include_router(self.router())

    def submit_samples(self) -> list[str]:
        """Create two sample roadmaps; returns their creation tasks' ids."""
        return [
            self.create_roadmap(f"roadmap-{n}", topic, concepts=3).id
            for n, topic in enumerate(("Python Basics", "SQL Joins"), start=1)
        ]


def concept_names(topic: str, concepts: int) -> list[str]:
    """The concept ids of a roadmap about ``topic``."""
    slug = topic.lower().replace(" ", "-")
    return [f"{slug}-{n}" for n in range(1, concepts + 1)]


_default: RoadmapApp | None = None


def default_app() -> RoadmapApp:
    """The demo app on the default database (``TASKTRAIL_DATABASE_URL``, else SQLite),
    created on first use; ``TASKTRAIL_DEMO_ITEM_SECONDS`` sets how long each content takes."""
    global _default
    if _default is None:
        seconds = float(os.environ.get("TASKTRAIL_DEMO_ITEM_SECONDS") or 0.3)
        _default = RoadmapApp(Trail(), item_seconds=seconds, retry_seconds=seconds * 3)
    return _default


def __getattr__(name: str) -> Any:
    if name == "trail":
        raise AttributeError(
            "the demo keeps its roadmaps in the memory of the `tasktrail demo` process, so "
            "it runs only there; start it with `tasktrail demo`"
        )
    raise AttributeError(name)
