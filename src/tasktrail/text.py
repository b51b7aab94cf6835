"""Text the database can store. PostgreSQL refuses the NUL character (``\\x00``) in text
and JSON, so tasktrail refuses it up front, with a message, instead of failing mid-write."""

from __future__ import annotations

from typing import Any

from tasktrail.errors import InvalidInput

NUL = "\x00"


def contains_nul(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (a JSON-like structure) holds a NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


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
