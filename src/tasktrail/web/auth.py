"""Who may use the dashboard, and which form posts are genuine.

- With an API token configured, the dashboard asks for it once (``/login``) and keeps an
  HttpOnly, SameSite=Strict cookie holding an HMAC derived from the token (never the
  token itself). Changing the token logs everyone out.
- Every POST carries a CSRF token (double submit: a random cookie and the same value in a
  hidden field) and is refused when its ``Origin`` or ``Sec-Fetch-Site`` says another
  site sent it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from tasktrail.api.security import is_authorized

SESSION_COOKIE = "tasktrail_session"
CSRF_COOKIE = "tasktrail_csrf"
CSRF_FIELD = "csrf_token"
CROSS_SITE = "refused: this request did not come from a dashboard page (CSRF check failed)"


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: an HMAC, so the cookie reveals nothing."""
    return hmac.new(token.encode(), b"tasktrail dashboard session", hashlib.sha256).hexdigest()


def is_logged_in(connection: HTTPConnection, token: str | None) -> bool:
    """Whether ``connection`` may see the dashboard: no token configured, a valid session
    cookie, or the API's Bearer header."""
    if token is None or is_authorized(connection, token, allow_query=False):
        return True
    given = connection.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(given.encode(), session_value(token).encode())


def token_matches(given: str, token: str) -> bool:
    """Whether the token typed into the login form is the configured one."""
    return hmac.compare_digest(given.encode(), token.encode())


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser (from its cookie), or a new one to set."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    return existing if len(existing) >= 32 else secrets.token_urlsafe(32)


def remember_csrf(response: Response, request: Request, value: str, path: str) -> None:
    """Set the CSRF cookie on ``response`` when the browser does not have ``value`` yet."""
    if request.cookies.get(CSRF_COOKIE) != value:
        response.set_cookie(
            CSRF_COOKIE, value, httponly=True, samesite="strict", secure=_https(request), path=path
        )


def set_session(response: Response, request: Request, token: str, path: str) -> None:
    """Log the browser in."""
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token),
        httponly=True,
        samesite="strict",
        secure=_https(request),
        path=path,
    )


def check_same_site(request: Request, form: Mapping[str, str]) -> None:
    """Raise 403 unless the POST came from one of our pages: a foreign ``Origin`` or
    ``Sec-Fetch-Site: cross-site``, or a CSRF field that differs from the cookie, fail."""
    if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        raise HTTPException(403, CROSS_SITE)
    origin = request.headers.get("origin")
    if origin is not None and not _same_origin(origin, request):
        raise HTTPException(403, CROSS_SITE)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = form.get(CSRF_FIELD, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), field.encode()):
        raise HTTPException(403, CROSS_SITE)


def _same_origin(origin: str, request: Request) -> bool:
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.scheme == request.url.scheme and parts.netloc == host


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def safe_next(value: str | None, root: str) -> str:
    """Where to go after logging in: a path on this site, never another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return root + "/"
