"""The task registry: which function runs under which name, and with what policy."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tasktrail.errors import InvalidInput, UnknownTask

TaskFunction = Callable[..., Any]


@dataclass(frozen=True)
class TaskDefinition:
    """A registered task function and its defaults."""

    name: str
    function: TaskFunction
    max_attempts: int
    backoff: float
    queue: str
    priority: int
    retry_on: tuple[type[BaseException], ...]
    #: Seconds between progress writes for this task; None: the runner's default.
    progress_interval: float | None = None

    @property
    def is_async(self) -> bool:
        """Whether the function is a coroutine function."""
        return inspect.iscoroutinefunction(self.function)

    @cached_property
    def _signature(self) -> inspect.Signature:
        return inspect.signature(self.function)

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise ``InvalidInput`` unless the function accepts ``params`` as keywords."""
        signature = self._signature
        try:
            signature.bind(None, **params)
        except TypeError as exc:
            shown = ", ".join(list(signature.parameters)[1:])
            raise InvalidInput(f"params do not fit {self.name}({shown}): {exc}") from None


class Registry:
    """Task definitions by name."""

    def __init__(self) -> None:
        self._definitions: dict[str, TaskDefinition] = {}

    def add(self, definition: TaskDefinition) -> None:
        """Register ``definition``; a second function under the same name is refused."""
        existing = self._definitions.get(definition.name)
        if existing is not None and existing.function is not definition.function:
            raise InvalidInput(f"a task is already registered as {definition.name!r}")
        self._definitions[definition.name] = definition

    def get(self, name: str) -> TaskDefinition:
        """The definition registered as ``name``; ``UnknownTask`` otherwise."""
        try:
            return self._definitions[name]
        except KeyError:
            raise UnknownTask(name, list(self._definitions)) from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._definitions)

    def __contains__(self, name: object) -> bool:
        return name in self._definitions
