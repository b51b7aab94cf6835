"""Task functions for the dashboard tests."""

from __future__ import annotations

import time

from tasktrail import TaskContext, Trail

#: Markup that would set ``window.xss`` if a page ever rendered it as HTML.
EVIL_NAME = "web.<script>window.xss='name'</script>"
EVIL_PARAM = "<script>window.xss='param'</script><b>bold?</b>"
EVIL_STEP = "<img src=x onerror=\"window.xss='step'\">"
EVIL_ERROR = "<script>window.xss='error'</script>"


def register(trail: Trail) -> None:
    """Register the dashboard tests' task functions on ``trail``."""

    @trail.task("web.long")
    def long(ctx: TaskContext, steps: int = 400, delay: float = 0.05) -> dict[str, int]:
        # The first run is long (a test cancels it); a retry finishes in about a second.
        if ctx.attempt > 1:
            steps, delay = 5, 0.2
        for step in range(steps):
            ctx.progress(100 * step / steps, f"step {step}")
            time.sleep(delay)
        return {"steps": steps, "attempt": ctx.attempt}

    @trail.task(EVIL_NAME)
    def evil(ctx: TaskContext, html: str) -> None:
        ctx.progress(50, EVIL_STEP)
        raise RuntimeError(EVIL_ERROR)

    @trail.task("web.echo")
    def echo(ctx: TaskContext, value: int = 0) -> dict[str, int]:
        return {"value": value}

    @trail.task("web.fail")
    def fail(ctx: TaskContext) -> None:
        raise RuntimeError("planned failure")
