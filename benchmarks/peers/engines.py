"""How the benchmark's tasktrail processes make their Trail: exactly as an application
would, with tasktrail's own engine settings (on PostgreSQL, a pooled connection is pinged
only after it sat idle: ``tasktrail.store.create_engine``)."""

from __future__ import annotations

from tasktrail import Trail


def bench_trail(url: str | None, *, auto_migrate: bool | None = None) -> Trail:
    """A Trail on ``url``."""
    return Trail(url, auto_migrate=auto_migrate)
