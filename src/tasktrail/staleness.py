"""Domain staleness: which items *claim* to be in progress while no active task covers them.

An app registers a probe per resource type (``@trail.stale_probe("roadmap",
item_type="concept")``). Given a resource id, the probe lists the items that claim to be
pending or generating, each a dict with at least ``"item"`` (the item's id). An item is a
resource of its own type: ``item_type`` by default, or its dict's ``"type"``.

An item is covered, and so not stale, when an active task is

* linked to the resource and to no resource of the item's type (it works on the whole
  resource, like a roadmap's creation or a batch retry), or
* linked to the item itself (like a single-concept retry linked to the roadmap and the
  concept).

Everything here is pure; ``Trail.status_check`` does the reading.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tasktrail.errors import InvalidInput
from tasktrail.records import TaskRecord

Probe = Callable[[str], Any]


class ProbeFailed(InvalidInput):
    """The app's stale probe raised, or answered something other than a list of items: a
    fault in the app's code, not in the resource asked about (the API answers 500)."""


@contextmanager
def probe_faults(probe: StaleProbe) -> Iterator[None]:
    """Turns an exception raised by ``probe`` in the block into ``ProbeFailed`` naming the
    probe (the original is its ``__cause__``)."""
    try:
        yield
    except ProbeFailed:
        raise
    except Exception as exc:
        raise ProbeFailed(
            f"the stale probe for {probe.resource_type!r} raised {type(exc).__name__}: {exc}"
        ) from exc


@dataclass(frozen=True)
class StaleProbe:
    """A registered probe: ``function(resource_id)`` lists items claiming to be in progress."""

    resource_type: str
    item_type: str | None
    function: Probe

    @property
    def is_async(self) -> bool:
        """Whether ``function`` is a coroutine function."""
        return inspect.iscoroutinefunction(self.function)


@dataclass(frozen=True)
class StatusCheck:
    """What ``Trail.status_check`` found for one resource."""

    resource_type: str
    resource_id: str
    #: Active tasks linked to the resource, newest first, each with its link ``role``.
    active_tasks: tuple[TaskRecord, ...]
    #: The probe's items that no active task covers, as the probe returned them.
    stale_items: tuple[dict[str, Any], ...]

    @property
    def has_active_task(self) -> bool:
        """Whether any active task is linked to the resource."""
        return bool(self.active_tasks)


def checked_items(raw: object, probe: StaleProbe) -> list[dict[str, Any]]:
    """The probe's answer, or ``ProbeFailed`` unless it is a list of dicts with an
    ``"item"`` string (and, without an ``item_type``, a ``"type"`` string)."""
    where = f"the stale probe for {probe.resource_type!r}"
    if not isinstance(raw, list | tuple):
        raise ProbeFailed(f"{where} must return a list of dicts, got {type(raw).__name__}")
    found: list[dict[str, Any]] = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("item"), str):
            raise ProbeFailed(f"{where} returned {entry!r}: each item needs an 'item' string")
        if item_type_of(entry, probe) is None:
            raise ProbeFailed(
                f"{where} returned {entry!r} with no 'type', and the probe has no item_type"
            )
        found.append(entry)
    return found


def item_type_of(entry: dict[str, Any], probe: StaleProbe) -> str | None:
    """The resource type an item names: its own ``"type"``, else the probe's ``item_type``."""
    own = entry.get("type")
    return own if isinstance(own, str) else probe.item_type


def covers_whole_resource(task: TaskRecord, item_type: str) -> bool:
    """Whether ``task`` (active and linked to the resource) works on all its items: it has
    no narrower link to a resource of ``item_type``."""
    return all(link.resource_type != item_type for link in task.links)


def uncovered(
    entries: Iterable[dict[str, Any]],
    probe: StaleProbe,
    active_tasks: Iterable[TaskRecord],
    item_is_active: Callable[[str, str], bool],
) -> list[dict[str, Any]]:
    """The entries that no active task covers; ``item_is_active(type, id)`` says whether an
    active task is linked to that item itself."""
    active = list(active_tasks)
    stale = []
    for entry in entries:
        item_type = item_type_of(entry, probe)
        assert item_type is not None  # checked_items refused such entries
        if any(covers_whole_resource(task, item_type) for task in active):
            continue
        if any(
            link.resource_type == item_type and link.resource_id == entry["item"]
            for task in active
            for link in task.links
        ):
            continue
        if item_is_active(item_type, entry["item"]):
            continue
        stale.append(entry)
    return stale
