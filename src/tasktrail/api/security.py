"""Bearer-token authentication for the API.

When a token is configured (``TASKTRAIL_API_TOKEN``, or ``token=`` to ``mount`` /
``create_app``), every API call needs ``Authorization: Bearer <token>``. Browsers cannot set
headers on ``EventSource`` or ``WebSocket``, so the event stream and the WebSocket also
accept ``?token=<token>``; prefer the header elsewhere, since URLs end up in logs.
"""

from __future__ import annotations

import hmac
import os

from starlette.requests import HTTPConnection

TOKEN_ENV = "TASKTRAIL_API_TOKEN"


def configured_token(token: str | None) -> str | None:
    """``token`` if given, else ``TASKTRAIL_API_TOKEN``; None (no auth) when both are empty."""
    value = token if token is not None else os.environ.get(TOKEN_ENV)
    return value or None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def is_authorized(connection: HTTPConnection, token: str | None, *, allow_query: bool) -> bool:
    """Whether ``connection`` carries ``token`` (always true when no token is configured)."""
    if token is None:
        return True
    scheme, _, given = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _same(given.strip(), token):
        return True
    if allow_query:
        query = connection.query_params.get("token")
        if query is not None and _same(query, token):
            return True
    return False


UNAUTHORIZED = "missing or wrong API token: send the header 'Authorization: Bearer <token>'"
