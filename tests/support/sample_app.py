"""A small app for tests that run the real ``tasktrail`` command:
``--app tests.support.sample_app:trail``.

The database comes from TASKTRAIL_DATABASE_URL, like any app's.
"""

from __future__ import annotations

from tasktrail import TaskContext, Trail

trail = Trail(auto_migrate=True)


@trail.task("sample.add")
def add(ctx: TaskContext, a: int, b: int) -> int:
    ctx.progress(50, "adding")
    return a + b


@trail.task("sample.fail")
def fail(ctx: TaskContext) -> None:
    raise RuntimeError("sample failure")
