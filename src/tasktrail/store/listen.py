"""PostgreSQL ``LISTEN``: hear about events committed by any process, on a dedicated
connection that lives in its own thread.

The store sends ``NOTIFY tasktrail_events`` in the same transaction as every event row, so a
notification means "some event committed"; listeners then read the table themselves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.engine import URL

from tasktrail.store.store import EVENTS_CHANNEL

logger = logging.getLogger("tasktrail.listen")
#: How long one wait for notifications lasts; bounds how fast ``stop`` returns.
_WAIT_SECONDS = 0.5
_RECONNECT_SECONDS = 1.0


def conninfo(url: URL) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL ``url``."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class NotificationListener:
    """Calls ``callback()`` (in its own thread) for every notification on ``channel``, and
    once after each (re)connect, since notifications sent while disconnected are lost."""

    def __init__(
        self, url: URL, callback: Callable[[], None], *, channel: str = EVENTS_CHANNEL
    ) -> None:
        self._conninfo = conninfo(url)
        self._callback = callback
        self._channel = channel
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tasktrail-listen", daemon=True)

    def start(self) -> None:
        """Start listening in a background thread."""
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop listening and close the connection; wait up to ``timeout`` seconds for the
        thread to end (0: do not wait; it ends within a second on its own)."""
        self._stopped.set()
        if self._thread.is_alive() and timeout != 0:
            self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self._callback()
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=_WAIT_SECONDS):
                            self._callback()
                            if self._stopped.is_set():
                                break
            except psycopg.Error as exc:
                logger.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._stopped.wait(_RECONNECT_SECONDS)
