"""Bad input is refused with a message naming the problem, and nothing is written."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tasktrail import InvalidInput, Link, TaskContext, Trail, UnknownTask


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def tutorial(trail: Trail) -> Trail:
    @trail.task("roadmap.tutorial")
    def tutorial(ctx: TaskContext, roadmap_id: str, concept_id: str = "c1") -> None:
        return None

    return trail


def _nothing_written(trail: Trail) -> None:
    assert trail.list_tasks().items == ()
    assert trail.events() == []


def test_an_unknown_name_lists_the_registered_ones(tutorial: Trail) -> None:
    with pytest.raises(
        UnknownTask, match=r"no task registered as 'roadmap.quiz'.*roadmap.tutorial"
    ):
        tutorial.submit("roadmap.quiz", {"roadmap_id": "r1"})
    _nothing_written(tutorial)


@pytest.mark.parametrize("name", [["roadmap.tutorial"], None, 3])
def test_a_name_that_is_not_a_string_is_refused(tutorial: Trail, name: Any) -> None:
    with pytest.raises(InvalidInput, match="name must be a string"):
        tutorial.submit(name, {"roadmap_id": "r1"})
    _nothing_written(tutorial)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"roadmap_id": datetime(2026, 1, 1)}, "params must be JSON-serialisable"),
        ({"roadmap_id": float("nan")}, "params must be JSON-serialisable"),
        (["r1"], "params must be a JSON object"),
        ({1: "r1"}, "params must be a JSON object"),
        ({}, "missing a required argument: 'roadmap_id'"),
        ({"roadmap_id": "r1", "colour": "red"}, "unexpected keyword argument 'colour'"),
        ({"roadmap_id": "r\x001"}, "params must not contain NUL characters"),
        ({"roadmap_id": {"x\x00": 1}}, "params must be JSON-serialisable|params must not"),
        ({"roadmap_id": _nested(64)}, "params must not nest .* more than 64 levels deep"),
        ({"roadmap_id": _nested(5000)}, "params must not nest .* more than 64 levels deep"),
    ],
)
def test_bad_params_are_refused(tutorial: Trail, params: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        tutorial.submit("roadmap.tutorial", params)
    _nothing_written(tutorial)


def test_params_nested_up_to_the_limit_are_stored(tutorial: Trail) -> None:
    task = tutorial.submit("roadmap.tutorial", {"roadmap_id": _nested(63)})  # 64 with params
    assert tutorial.get(task.id).params == {"roadmap_id": _nested(63)}


def test_a_result_nested_too_deeply_fails_the_task_with_a_message(trail: Trail) -> None:
    @trail.task("deep.result", max_attempts=3)
    def deep(ctx: TaskContext) -> Any:
        return _nested(300)

    task = trail.submit("deep.result")
    trail.run_pending()
    failed = trail.get(task.id)
    assert failed.status == "failed"  # not retried: the same result would come back
    assert failed.error is not None and "more than 64 levels deep" in failed.error
    assert failed.result is None


@pytest.mark.parametrize(
    ("link", "message"),
    [
        (lambda: Link("", "r1"), "link type must be a non-empty string"),
        (lambda: Link("roadmap", ""), "link id must be a non-empty string"),
        (lambda: Link("roadmap", "   "), "link id must be a non-empty string"),
        (lambda: Link("roadmap", 7), "link id must be a non-empty string"),  # type: ignore[arg-type]
        (lambda: Link("roadmap", "x" * 201), "longer than 200"),
        (lambda: Link("road\x00map", "r1"), "link type must not contain NUL"),
    ],
)
def test_bad_links_are_refused(tutorial: Trail, link: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        tutorial.submit("roadmap.tutorial", {"roadmap_id": "r1"}, links=[link()])
    _nothing_written(tutorial)


def test_links_given_as_a_generator_are_all_stored(tutorial: Trail) -> None:
    links = (Link("concept", f"c{n}") for n in range(3))
    task = tutorial.submit("roadmap.tutorial", {"roadmap_id": "r1"}, links=links)
    expected = {("concept", "c0"), ("concept", "c1"), ("concept", "c2")}
    assert {(link.resource_type, link.resource_id) for link in task.links} == expected
    assert {
        (link.resource_type, link.resource_id) for link in tutorial.get(task.id).links
    } == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"links": [("roadmap", "r1")]}, "links must be a list of tasktrail.Link"),
        ({"links": 7}, "links must be a list of tasktrail.Link"),
        ({"max_attempts": 0}, "max_attempts must be from 1"),
        ({"max_attempts": "3"}, "max_attempts must be a whole number"),
        ({"queue": ""}, "queue must be a non-empty string"),
        ({"dedupe_key": ""}, "dedupe_key must be a non-empty string"),
        ({"run_after": datetime(2030, 1, 1)}, "run_after must be a timezone-aware datetime"),
        ({"backoff": -1}, "backoff must be a number of seconds"),
        ({"priority": 1.5}, "priority must be a whole number"),
        ({"dedupe_key": "a\x00b"}, "dedupe_key must not contain NUL"),
        ({"description": "\x00"}, "description must not contain NUL"),
    ],
)
def test_bad_options_are_refused(tutorial: Trail, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        tutorial.submit("roadmap.tutorial", {"roadmap_id": "r1"}, **options)
    _nothing_written(tutorial)


def test_registering_two_functions_under_one_name_is_refused(tutorial: Trail) -> None:
    with pytest.raises(InvalidInput, match="already registered"):

        @tutorial.task("roadmap.tutorial")
        def other(ctx: TaskContext) -> None:
            return None
