"""The pure presentation helpers (no database, no server)."""

from __future__ import annotations

import pytest

from tasktrail.states import Status
from tasktrail.web import present
from tasktrail.web.auth import safe_next


@pytest.mark.parametrize(
    ("status", "failed_items", "expected"),
    [
        (Status.CREATED, 0, (True, False, False)),
        (Status.RUNNING, 0, (True, False, False)),
        (Status.COMPLETED, 0, (False, False, False)),
        (Status.FAILED, 0, (False, True, False)),
        (Status.PARTIAL_FAILURE, 2, (False, True, True)),
        (Status.CANCELLED, 1, (False, True, True)),
    ],
)
def test_actions_follow_the_state_machine(
    status: Status, failed_items: int, expected: tuple[bool, bool, bool]
) -> None:
    actions = present.actions(status, failed_items)
    assert (actions.cancel, actions.retry, actions.retry_failed_items) == expected


def test_bars_scale_to_the_largest_value_or_to_a_given_top() -> None:
    tall, short = present.bars([4, 2], ["a", "b"], height=40)
    assert (tall.height, tall.y, short.height, short.y) == (40, 0, 20, 20)
    (half,) = present.bars([50], ["x"], height=40, top=100)
    assert half.height == 20
    assert [b.height for b in present.bars([0, 0], ["a", "b"])] == [0, 0]


def test_counts_past_the_cap_show_a_plus() -> None:
    assert present.count_label(0, 10_000) == "0"
    assert present.count_label(10_000, 10_000) == "10,000"
    assert present.count_label(10_001, 10_000) == "10,000+"


def test_failure_rates_and_ages() -> None:
    assert present.failure_rates([3, 0, 0], [1, 2, 0]) == [25.0, 100.0, 0.0]
    assert [present.age(s) for s in (-1, 42, 185, 7800)] == ["0s", "42s", "3m 05s", "2h 10m"]


def test_json_is_pretty_and_left_to_the_template_to_escape() -> None:
    assert (
        present.pretty_json({"b": "<i>", "a": [1]}) == '{\n  "a": [\n    1\n  ],\n  "b": "<i>"\n}'
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/tasks/1", "/tasks/1"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        (None, "/"),
    ],
)
def test_after_login_only_paths_on_this_site(given: str | None, expected: str) -> None:
    assert safe_next(given, "") == expected
