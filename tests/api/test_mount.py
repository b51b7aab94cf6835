"""``tasktrail.api.mount(app, trail)``: one call adds the API to an app of your own and
changes nothing else in it."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

import tasktrail.api
from tasktrail import Trail
from tests.support.server import serve


def test_mount_adds_the_api_and_leaves_the_rest_of_the_app_alone(app_trail: Trail) -> None:
    app = FastAPI()

    @app.get("/items/{number}")
    async def item(number: int) -> dict[str, int]:
        return {"number": number}

    tasktrail.api.mount(app, app_trail, token="")

    with serve(app) as url, httpx.Client(base_url=url) as http:
        created = http.post("/api/v1/tasks", json={"name": "test.echo"})
        assert created.status_code == 201
        assert http.get(f"/api/v1/tasks/{created.json()['id']}").status_code == 200
        assert http.get("/api/v1/tasks/nope").json()["detail"].startswith("no task with id")
        assert (
            http.get("/api/v1/tasks", params={"limit": 0})
            .json()["detail"]
            .startswith("invalid request")
        )

        assert http.get("/items/3").json() == {"number": 3}
        # The app's own validation errors keep FastAPI's usual shape.
        own_error = http.get("/items/three").json()["detail"]
        assert isinstance(own_error, list)
        assert http.get("/healthz").status_code == 404  # only create_app adds it
