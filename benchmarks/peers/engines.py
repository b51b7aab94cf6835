"""How the benchmark's tasktrail processes make their engine.

``BENCH_PRE_PING=0`` turns off SQLAlchemy's pessimistic ``pool_pre_ping`` that tasktrail's
``create_engine`` sets on PostgreSQL: with psycopg it costs one extra round trip and one
extra committed (autocommit ``SELECT 1``) transaction per connection checkout, that is per
transaction. The benchmark measures what that costs; tasktrail's default is unchanged.
"""

from __future__ import annotations

import os

from tasktrail import Trail
from tasktrail.store import create_engine


def bench_trail(url: str | None, *, auto_migrate: bool | None = None) -> Trail:
    """A Trail on ``url``, with ``pool_pre_ping`` off when ``BENCH_PRE_PING=0``."""
    if os.environ.get("BENCH_PRE_PING") != "0" or url is None or url.startswith("sqlite"):
        return Trail(url, auto_migrate=auto_migrate)
    engine = create_engine(url, pool_pre_ping=False)
    return Trail(engine=engine, auto_migrate=auto_migrate)
