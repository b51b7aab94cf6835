"""A built-in example app, mirroring seed 000's roadmaps: a creation task generates a
roadmap's concepts, and for each concept a tutorial, resources and a quiz as items. Some
items fail on purpose, so partial failure and single-concept retries can be seen.

Load it with ``--app tasktrail.demo:trail`` or run ``tasktrail demo``.
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any

from tasktrail.context import TaskContext
from tasktrail.records import Link
from tasktrail.trail import Trail

CONTENT_TYPES = ("tutorial", "resources", "quiz")
#: Seconds each generated item takes; the demo is meant to be watched.
ITEM_SECONDS = float(os.environ.get("TASKTRAIL_DEMO_ITEM_SECONDS", "0.3"))


def _fails_first_time(concept: str, content_type: str) -> bool:
    # Deterministic: the same concept/content pair fails in every demo run.
    return zlib.crc32(f"{concept}/{content_type}".encode()) % 5 == 0


def register(trail: Trail) -> None:
    """Register the demo's task functions on ``trail``."""

    @trail.task("roadmap.create", max_attempts=2, backoff=1.0)
    def create_roadmap(
        ctx: TaskContext, roadmap_id: str, topic: str, concepts: int = 4
    ) -> dict[str, Any]:
        names = [f"{topic.lower().replace(' ', '-')}-{n}" for n in range(1, concepts + 1)]
        ctx.progress(5, "outline")
        ctx.log("info", "outlined roadmap", {"concepts": names})
        keys = [f"{name}/{kind}" for name in names for kind in CONTENT_TYPES]
        for done, item in enumerate(ctx.items(keys), start=1):
            with item:
                time.sleep(ITEM_SECONDS)
                concept, kind = item.key.split("/")
                if ctx.attempt == 1 and _fails_first_time(concept, kind):
                    raise RuntimeError(f"the model returned no {kind} for {concept}")
            ctx.progress(5 + 95 * done / len(keys), f"content {item.key}")
        return {"roadmap_id": roadmap_id, "concepts": names}

    @trail.task("roadmap.retry_content", max_attempts=3, backoff=1.0)
    def retry_content(
        ctx: TaskContext, roadmap_id: str, concept_id: str, content_type: str
    ) -> dict[str, Any]:
        ctx.progress(10, f"regenerating {content_type}")
        for item in ctx.items([f"{concept_id}/{content_type}"]):
            with item:
                time.sleep(ITEM_SECONDS * 2)
        ctx.progress(100, "done")
        return {"roadmap_id": roadmap_id, "concept_id": concept_id, "content_type": content_type}


def submit_samples(trail: Trail) -> list[str]:
    """Submit a few sample roadmaps; returns their task ids."""
    ids = []
    for number, topic in enumerate(("Python Basics", "SQL Joins"), start=1):
        roadmap_id = f"roadmap-{number}"
        record = trail.submit(
            "roadmap.create",
            {"roadmap_id": roadmap_id, "topic": topic, "concepts": 3},
            links=[Link("roadmap", roadmap_id, role="creation")],
            description=f"Generate the {topic} roadmap",
        )
        ids.append(record.id)
    return ids


trail = Trail()
register(trail)
