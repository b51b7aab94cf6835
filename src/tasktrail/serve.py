"""``tasktrail serve``: the API, the dashboard and an embedded worker in one process, on
uvicorn."""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

import tasktrail.web
from tasktrail.api import create_app
from tasktrail.api.security import configured_token
from tasktrail.errors import InvalidInput
from tasktrail.feed import Feed
from tasktrail.trail import Trail
from tasktrail.worker import Worker


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, *, insecure: bool) -> None:
    """``InvalidInput`` when binding ``host`` would expose the API without a token."""
    if token is None and not insecure and not is_loopback(host):
        raise InvalidInput(
            f"refusing to serve on {host} without an API token: anyone who can reach it "
            "could run and cancel tasks. Set TASKTRAIL_API_TOKEN, bind 127.0.0.1, or pass "
            "--insecure if something else guards the port."
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: one the OS picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port"
        ) from None
    # Listening before uvicorn starts: a client told the URL early waits in the backlog
    # instead of being refused.
    sock.listen(2048)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_app(trail: Trail, *, token: str | None) -> FastAPI:
    """What ``tasktrail serve`` serves: the API, ``/healthz``, the dashboard at ``/`` and
    ``/metrics``, sharing one event feed."""
    feed = Feed(trail.store)
    app = create_app(trail, token=token, feed=feed)
    tasktrail.web.mount(app, trail, token=token, feed=feed)
    return app


def serve(
    trail: Trail,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    concurrency: int = 4,
    worker: bool = True,
    insecure: bool = False,
    customize: Callable[[FastAPI], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the API and the dashboard for ``trail`` (and run its tasks with an embedded
    worker unless ``worker`` is false) until SIGINT/SIGTERM; running tasks are given back
    to the queue if they do not finish within the worker's shutdown timeout.

    ``customize(app)`` may add routes before serving; ``on_ready(url)`` is called once the
    socket is bound. Refuses a non-loopback ``host`` without an API token unless
    ``insecure``.
    """
    token = configured_token(None)
    check_exposure(host, token, insecure=insecure)
    app = build_app(trail, token=token)
    if customize is not None:
        customize(app)
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    runner = Worker(trail, concurrency=concurrency) if worker else None
    if runner is not None:
        runner.start()
    try:
        if on_ready is not None:
            on_ready(url_of(sock))
        with _signals_end_the_server_only():
            server.run(sockets=[sock])
    finally:
        # A second signal from here on ends the process at once; the reaper of another
        # worker then recovers whatever was running.
        if runner is not None:
            runner.stop()
        sock.close()


@contextmanager
def _signals_end_the_server_only() -> Iterator[None]:
    # uvicorn stops on SIGINT/SIGTERM, restores the handlers it found and raises the signal
    # again, which would kill the process before the worker could stop gracefully. The
    # handlers it finds are these no-ops, so that re-raise does nothing.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: None) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
