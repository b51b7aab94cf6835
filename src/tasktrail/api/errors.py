"""Every failure becomes ``{"detail": "..."}`` with the right status code, inside the API's
own routes (``ApiRoute``), so mounting the API changes nothing in the rest of your app.

``TaskNotFound`` and ``UnknownTask`` → 404, ``InvalidTransition`` → 409 (naming the task's
current status), a failing stale probe → 500 (logged), ``InvalidInput`` and request
validation errors → 422 (so is text with NUL characters, which PostgreSQL cannot store), a
body over the limit → 413.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from tasktrail.errors import InvalidInput, InvalidTransition, TaskNotFound, UnknownTask
from tasktrail.staleness import ProbeFailed
from tasktrail.text import MAX_JSON_DEPTH, contains_nul

logger = logging.getLogger("tasktrail.api")

#: Request bodies larger than this many bytes are refused with 413.
DEFAULT_MAX_BODY_BYTES = 1_000_000

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def error(status_code: int, detail: str, **extra: Any) -> JSONResponse:
    """The API's error answer."""
    return JSONResponse({"detail": detail, **extra}, status_code=status_code)


def describe_validation(errors: Sequence[Any]) -> str:
    """One readable sentence from Pydantic's validation errors."""
    parts = []
    for problem in errors[:5]:
        location = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {problem.get('msg', 'is invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more + "; fix these fields and resend"


def for_exception(exc: Exception) -> JSONResponse | None:
    """The answer to one of tasktrail's exceptions (or a validation error), else None."""
    if isinstance(exc, HTTPException):
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )
    if isinstance(exc, RequestValidationError):
        return error(422, describe_validation(list(exc.errors())))
    if isinstance(exc, UnknownTask):
        return error(404, f"{exc}; register it with @trail.task or fix the name")
    if isinstance(exc, TaskNotFound):
        return error(404, f"{exc}; check the id (GET /api/v1/tasks lists tasks)")
    if isinstance(exc, InvalidTransition):
        return error(409, f"{exc} (current status: {exc.current})", current_status=exc.current)
    if isinstance(exc, ProbeFailed):  # before InvalidInput: the server's fault, not the request's
        logger.error("status check failed: %s", exc, exc_info=exc)
        return error(500, f"{exc}; this is a fault in the server's stale probe, not in the request")
    if isinstance(exc, InvalidInput):
        return error(422, str(exc))
    return None


class BodyTooLarge(Exception):
    """The request body passed the limit."""


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request's body, or ``BodyTooLarge`` once it passes ``limit`` bytes (checked on
    the declared length first, then while reading, so a large body is never held whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


NUL_REFUSED = (
    "text may not contain NUL characters (\\u0000): the database cannot store them; "
    "remove them and resend"
)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")

DEPTH_REFUSED = (
    f"JSON in the request nests objects and arrays more than {MAX_JSON_DEPTH} levels deep "
    "inside its fields (such as params); send flatter data"
)


def body_too_deep(body: bytes) -> bool:
    """Whether a JSON body nests more than ``MAX_JSON_DEPTH`` levels inside its top-level
    object. Scanned as bytes, before any parser recurses into it: Python's JSON parser
    fails on deep nesting with ``RecursionError``, and Pydantic cannot serialise such
    values back out (every later answer holding them would fail)."""
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", body)):
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_JSON_DEPTH + 1:
            return True
    return False


def request_has_nul(request: Request, body: bytes) -> bool:
    """Whether the path, the query or the JSON body carries a NUL character."""
    if contains_nul(list(request.path_params.values())):
        return True
    if any(
        contains_nul(key) or contains_nul(value)
        for key, value in request.query_params.multi_items()
    ):
        return True
    if b"\x00" in body:
        return True
    if b"u0000" in body:  # only then is it worth parsing: a JSON escape may hide one
        try:
            return contains_nul(json.loads(body))
        except ValueError:
            return False  # not JSON: validation will say so
    return False


class ApiRoute(APIRoute):
    """An ``APIRoute`` that enforces the body limit and answers errors the API's way."""

    max_body_bytes = DEFAULT_MAX_BODY_BYTES

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()
        limit = self.max_body_bytes

        async def route(request: Request) -> Response:
            body = b""
            if request.method in {"POST", "PUT", "PATCH"}:
                try:
                    body = await read_limited_body(request, limit)
                except BodyTooLarge:
                    return error(413, f"request body is larger than {limit} bytes; send less")
                # Starlette caches the body here; the handler then reads it from memory.
                request._body = body
            if body_too_deep(body):
                return error(422, DEPTH_REFUSED)
            if request_has_nul(request, body):
                return error(422, NUL_REFUSED)
            try:
                return await handle(request)
            except Exception as exc:
                answer = for_exception(exc)
                if answer is None:
                    raise
                return answer

        return route


def route_class(max_body_bytes: int) -> type[ApiRoute]:
    """An ``ApiRoute`` class refusing bodies over ``max_body_bytes``."""
    return type("LimitedApiRoute", (ApiRoute,), {"max_body_bytes": max_body_bytes})
