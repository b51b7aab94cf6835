"""``/resources/{type}/{id}``: the tasks linked to a domain object, and its status check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from tasktrail.api.errors import ApiRoute
from tasktrail.api.models import COMMON_ERRORS, LinkedTask, StatusCheckOut
from tasktrail.trail import Trail

ResourceType = Annotated[str, Path(max_length=100, description="The resource's type.")]
ResourceId = Annotated[
    str, Path(max_length=200, description="The resource's id; it may contain `/`.")
]


def router(trail: Trail, *, route_class: type[ApiRoute] = ApiRoute) -> APIRouter:
    """The ``/resources`` routes, working on ``trail``."""
    api = APIRouter(
        prefix="/resources", tags=["resources"], route_class=route_class, responses=COMMON_ERRORS
    )

    @api.get("/{resource_type}/{resource_id:path}/tasks", response_model=list[LinkedTask])
    async def resource_tasks(
        resource_type: ResourceType,
        resource_id: ResourceId,
        active: Annotated[
            bool | None,
            Query(description="true: only queued, scheduled, running; false: only the others."),
        ] = None,
    ) -> list[LinkedTask]:
        """Every task linked to the resource, newest first, each with its link's `role`."""
        records = await trail.tasks_for_async(resource_type, resource_id, active=active)
        return [LinkedTask.of(r, role=r.role) for r in records]

    @api.get("/{resource_type}/{resource_id:path}/status-check", response_model=StatusCheckOut)
    async def status_check(resource_type: ResourceType, resource_id: ResourceId) -> StatusCheckOut:
        """The active tasks linked to the resource, and the items the app's stale probe says
        are in progress that no active task covers (`stale_items`)."""
        return StatusCheckOut.of(await trail.status_check_async(resource_type, resource_id))

    return api
