"""tasktrail's HTTP API (FastAPI).

Mount it into your own app with one call::

    from fastapi import FastAPI
    import tasktrail.api

    app = FastAPI()
    tasktrail.api.mount(app, trail)          # routes under /api/v1

or run it alone: ``tasktrail.api.create_app(trail)`` (what ``tasktrail serve`` does).
"""

from tasktrail.api.app import PREFIX, build_router, create_app, mount

__all__ = ["PREFIX", "build_router", "create_app", "mount"]
