"""Text the database can store. PostgreSQL refuses the NUL character (``\\x00``) in text
and JSON, so tasktrail refuses it up front, with a message, instead of failing mid-write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tasktrail.errors import InvalidInput

NUL = "\x00"


#: How deeply JSON that tasktrail stores may nest (``{"a": {"b": 1}}`` nests 2 levels).
#: Far deeper values cannot be serialised back out (nor walked without deep recursion).
MAX_JSON_DEPTH = 64


def _walk(value: Any) -> Iterator[tuple[Any, int]]:
    """Every node of a JSON-like structure with its depth, iteratively (no recursion,
    so hostile nesting cannot exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, dict):
            for key, item in node.items():
                stack.append((key, depth + 1))
                stack.append((item, depth + 1))
        elif isinstance(node, list | tuple):
            stack.extend((item, depth + 1) for item in node)


def contains_nul(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (a JSON-like structure) holds a NUL."""
    return any(isinstance(node, str) and NUL in node for node, _ in _walk(value))


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` (a JSON-like structure) nests more than ``limit`` levels."""
    return any(
        depth >= limit and isinstance(node, dict | list | tuple) for node, depth in _walk(value)
    )


def refuse_too_deep(value: Any, what: str) -> None:
    """``InvalidInput`` naming ``what`` if ``value`` nests more than ``MAX_JSON_DEPTH``
    levels of objects and arrays."""
    if too_deep(value):
        raise InvalidInput(
            f"{what} must not nest objects and arrays more than {MAX_JSON_DEPTH} levels deep; "
            "send flatter data"
        )


def refuse_nul(value: Any, what: str) -> None:
    """``InvalidInput`` naming ``what`` if ``value`` holds a NUL character anywhere."""
    if contains_nul(value):
        raise InvalidInput(
            f"{what} must not contain NUL characters (the database cannot store them)"
        )


def storable(text: str) -> str:
    """``text`` with NUL characters shown as ``\\x00``: for messages tasktrail writes
    itself, such as an exception's text, which must never make a write fail."""
    return text.replace(NUL, "\\x00")
