"""Task functions the tests register on a ``Trail`` (also loaded by the worker process)."""

from __future__ import annotations

import time
from typing import Any

from tasktrail import TaskContext, Trail


def register(trail: Trail) -> None:
    """Register the test task functions on ``trail``."""

    @trail.task("test.echo")
    def echo(ctx: TaskContext, **params: Any) -> dict[str, Any]:
        ctx.progress(50, "echoing")
        return params

    @trail.task("test.steps", progress_interval=0)  # streams under test see every step
    def steps(ctx: TaskContext, steps: int = 5, delay: float = 0.0) -> dict[str, int]:
        for step in range(steps):
            ctx.progress(100 * step / steps, f"step {step}")
            time.sleep(delay)
        return {"steps": steps}

    @trail.task("test.until_cancelled")
    def until_cancelled(ctx: TaskContext, limit: float = 30.0) -> None:
        # Runs until asked to stop; raises TaskCancelled then (the test's deadline is `limit`).
        deadline = time.monotonic() + limit
        ctx.progress(1, "waiting for cancel")
        while time.monotonic() < deadline:
            ctx.check_cancelled()
            time.sleep(0.02)
        raise TimeoutError("nobody cancelled me")

    @trail.task("test.cancel_then_work")
    def cancel_then_work(ctx: TaskContext, steps: int = 3) -> dict[str, int]:
        # Seed 002's task: the first run is cancelled by the user; the retry does the work.
        if ctx.attempt == 1:
            until_cancelled(ctx)
        for step in range(steps):
            ctx.progress(100 * step / steps, f"retry step {step}")
        return {"attempt": ctx.attempt}

    @trail.task("test.fail")
    def fail(ctx: TaskContext, message: str = "boom") -> None:
        raise RuntimeError(message)

    @trail.task("test.items")
    def with_items(ctx: TaskContext, keys: list[str], failing: list[str]) -> None:
        for item in ctx.items(keys):
            with item:
                if item.key in failing:
                    raise RuntimeError(f"{item.key} failed")
