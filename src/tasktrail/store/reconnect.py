"""The loop of a background thread that holds a connection of its own (a ``LISTEN``, a
SQLite commit watcher): run it, and when the connection is lost, log it and start again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("tasktrail.reconnect")
#: Seconds between a lost connection and the next attempt.
RECONNECT_SECONDS = 1.0


def run_reconnecting(
    closed: threading.Event,
    session: Callable[[], None],
    *,
    lost: str,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """Call ``session()`` until ``closed`` is set. When it raises, log ``lost`` with the
    error, call ``on_lost()``, and try again ``RECONNECT_SECONDS`` later (at once on close)."""
    while not closed.is_set():
        try:
            session()
        except Exception:
            logger.warning("%s; reconnecting", lost, exc_info=True)
            if on_lost is not None:
                on_lost()
            closed.wait(RECONNECT_SECONDS)
