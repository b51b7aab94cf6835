"""Running one claimed task: call its function with a ``TaskContext`` and record how it
ended. Every executor (``Trail.run_pending``, the worker, Celery) goes through here, so a
task ends the same way wherever it runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tasktrail.context import (
    DEFAULT_PROGRESS_INTERVAL,
    TaskContext,
    check_json,
    describe_error,
)
from tasktrail.errors import InvalidInput, InvalidTransition, RunSuperseded, TaskCancelled
from tasktrail.records import TaskRecord
from tasktrail.registry import Registry, TaskDefinition
from tasktrail.retries import DoNotRetry, backoff_delay, should_retry
from tasktrail.states import BACK_OFF, CANCEL, FAIL, PARTIAL_FAIL
from tasktrail.store import Store
from tasktrail.text import storable

logger = logging.getLogger("tasktrail.runner")
_FAILED_KEYS_SHOWN = 5


@dataclass(frozen=True)
class NextClaim:
    """Which task a worker takes next (as ``Store.claim`` filters them)."""

    queues: Collection[str] | None
    names: Collection[str] | None


@dataclass(frozen=True)
class Outcome:
    """How a task function's call ended: the value it returned, or what it raised."""

    value: Any = None
    error: Exception | None = None


class Runner:
    """Runs claimed tasks for one worker identity."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        worker: str,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker = worker
        self.progress_interval = progress_interval
        self._rng = rng

    def context_for(self, task: TaskRecord) -> TaskContext:
        """The context a run of ``task`` hands to its function."""
        interval = self.progress_interval
        if task.name in self.registry:
            own = self.registry.get(task.name).progress_interval
            interval = interval if own is None else own
        return TaskContext(self.store, task, worker=self.worker, progress_interval=interval)

    def run(self, task: TaskRecord) -> TaskRecord | None:
        """Run a claimed ``task`` in this thread and record its end.

        Returns the task as recorded, or None when the run was superseded meanwhile.
        """
        recorded, _ = self.run_then_claim(task, None)
        return recorded

    def run_then_claim(
        self, task: TaskRecord, claim: NextClaim | None
    ) -> tuple[TaskRecord | None, TaskRecord | None]:
        """``run`` ``task`` and, if it completes, claim the next queued task of ``claim``
        for this worker in the same write (the worker's way from one task to the next).

        Returns the task as recorded (None when superseded) and the task claimed (None
        without ``claim``, when nothing was queued, or when the run did not complete).
        """
        with self.store.keep_connection():
            context = self.context_for(task)
            try:
                definition = self.registry.get(task.name)
                function = definition.function
                if definition.is_async:
                    value = asyncio.run(function(context, **task.params))
                else:
                    value = function(context, **task.params)
                outcome = Outcome(value=value)
            except Exception as exc:
                outcome = Outcome(error=exc)
            return self._finish(task, context, outcome, claim)

    async def run_async(self, task: TaskRecord) -> TaskRecord | None:
        """Async version of ``run``: async functions run on the current event loop,
        sync ones in a thread."""
        context = self.context_for(task)
        try:
            definition = self.registry.get(task.name)
            function = definition.function
            if definition.is_async:
                value = await function(context, **task.params)
            else:
                value = await asyncio.to_thread(function, context, **task.params)
            outcome = Outcome(value=value)
        except Exception as exc:
            outcome = Outcome(error=exc)
        return await asyncio.to_thread(self.finish, task, context, outcome)

    def finish(self, task: TaskRecord, context: TaskContext, outcome: Outcome) -> TaskRecord | None:
        """Record how run ``task.attempts`` ended. A result from a run that no longer owns
        the task is not applied: it is recorded as a ``discarded`` event instead."""
        recorded, _ = self._finish(task, context, outcome, None)
        return recorded

    def _finish(
        self, task: TaskRecord, context: TaskContext, outcome: Outcome, claim: NextClaim | None
    ) -> tuple[TaskRecord | None, TaskRecord | None]:
        try:
            context.flush()
            return self._record(task, outcome, claim)
        except RunSuperseded as superseded:
            self._discard(task, outcome, str(superseded))
            return None, None

    def _record(
        self, task: TaskRecord, outcome: Outcome, claim: NextClaim | None
    ) -> tuple[TaskRecord, TaskRecord | None]:
        error = outcome.error
        if isinstance(error, RunSuperseded):
            raise error
        if isinstance(error, TaskCancelled):
            return self._transition(task, CANCEL, message="cancelled while running"), None
        if error is None:
            try:
                check_json(outcome.value, "the task's result")
            except InvalidInput as not_json:
                error = DoNotRetry(str(not_json))
            else:
                return self._record_return(task, outcome.value, claim)
        return self._record_failure(task, error, details=_error_details(error)), None

    def _record_return(
        self, task: TaskRecord, result: Any, claim: NextClaim | None
    ) -> tuple[TaskRecord, TaskRecord | None]:
        if claim is None:
            completed = self.store.complete_run(task.id, task.attempts, result, actor=self.worker)
            if completed is not None:
                return completed, None
        else:
            ended = self.store.complete_then_claim(
                task.id, task.attempts, result,
                worker=self.worker, queues=claim.queues, names=claim.names,
            )  # fmt: skip
            if ended is not None:
                return ended
        # Some items failed: a partial failure, or a failure when all of them did.
        counts = self.store.item_counts(task.id)
        keys = self.store.failed_item_keys(task.id, _FAILED_KEYS_SHOWN)
        shown = ", ".join(keys) + (", …" if counts.failed > len(keys) else "")
        if counts.failed < counts.total:
            message = f"{counts.failed} of {counts.total} items failed: {shown}"
            return self._transition(task, PARTIAL_FAIL, error=message, result=result), None
        message = f"all {counts.total} items failed: {shown}"
        failed = self._record_failure(task, RuntimeError(message), details={"result": result})
        return failed, None

    def _record_failure(
        self, task: TaskRecord, error: Exception, *, details: dict[str, Any]
    ) -> TaskRecord:
        definition = self._definition(task)
        retry_on = definition.retry_on if definition else ()
        message = describe_error(error)
        if should_retry(
            error, attempt=task.attempts, max_attempts=task.max_attempts, retry_on=retry_on
        ):
            delay = backoff_delay(task.backoff, task.attempts, rng=self._rng)
            run_after = self.store.clock() + timedelta(seconds=delay)
            return self._transition(
                task,
                BACK_OFF,
                run_after=run_after,
                message=f"{message}; attempt {task.attempts + 1} in {delay:.2f}s",
                data={**details, "error": message, "retry_in": delay,
                      "next_attempt": task.attempts + 1},
            )  # fmt: skip
        return self._transition(task, FAIL, error=message, message=message, data=details)

    def _definition(self, task: TaskRecord) -> TaskDefinition | None:
        return self.registry.get(task.name) if task.name in self.registry else None

    def _transition(self, task: TaskRecord, transition: Any, **kwargs: Any) -> TaskRecord:
        try:
            return self.store.transition(
                task.id, transition, attempt=task.attempts, actor=self.worker, **kwargs
            )
        except InvalidTransition as refused:  # pragma: no cover - attempt guard covers it
            raise RunSuperseded(str(refused)) from refused

    def _discard(self, task: TaskRecord, outcome: Outcome, why: str) -> None:
        ended = "raised " + describe_error(outcome.error) if outcome.error else "returned"
        logger.info("discarding the end of task %s attempt %s: %s", task.id, task.attempts, why)
        data: dict[str, Any] = {"attempt": task.attempts}
        if outcome.error is None:
            try:
                check_json(outcome.value, "result")
                data["result"] = outcome.value
            except InvalidInput:
                data["result"] = repr(outcome.value)[:1000]
        self.store.add_event(
            task.id,
            "discarded",
            message=f"run {task.attempts} {ended} after it lost the task: {why}",
            data=data,
            actor=self.worker,
        )


def _error_details(error: BaseException) -> dict[str, Any]:
    return {
        "error_type": f"{type(error).__module__}.{type(error).__qualname__}",
        "traceback": storable("".join(traceback.format_exception(error))),
    }
