"""Waking, at once, the other processes that watch one SQLite file.

A commit watcher (``watch``) hears another process's commit when it next reads
``PRAGMA data_version``, up to one poll interval later: on average half of it added to the
time a worker in another process takes to start a submitted task. So a process that
commits a task becoming queued (or scheduled) rings a bell: an empty datagram to every
watcher of the same file, each of which waits on a Unix socket of its own, in a directory
named after the file, instead of sleeping. The watcher still reads ``data_version`` before
it calls back, and still polls: the bell only makes the next look come sooner.

No bell (and no error: the watchers poll as before) where Unix datagram sockets are missing
(Windows), where the directory cannot be made or belongs to another user, or where a path
is too long for a socket. A ring never blocks: a watcher whose socket is full has rings
waiting already. A process removes its sockets when it exits, even without closing its
watchers; the socket of a process that was killed is removed by the next ring.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import secrets
import select
import socket
import stat
import tempfile
from functools import cache
from pathlib import Path

logger = logging.getLogger("tasktrail.bell")
_SUFFIX = ".sock"
_NEEDED = ((socket, "AF_UNIX"), (os, "geteuid"), (select, "poll"))
#: The sockets of this process's open listeners, each with the process that bound it (a
#: forked child inherits the set, not the sockets).
_bound: set[tuple[int, Path]] = set()


class Bell:
    """The bell of one SQLite file, shared by every process that opens it: the directory
    of its listeners' sockets, made by the first listener and removed by the last."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def ring(self) -> None:
        """Wake every watcher of the file now (never blocks, never raises)."""
        try:
            paths = [e.path for e in os.scandir(self.directory) if e.name.endswith(_SUFFIX)]
            if not paths:
                return
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.setblocking(False)
                for path in paths:
                    _ring_one(sender, path)
        except OSError as error:  # no directory: nobody listens
            logger.debug("could not ring %s: %s", self.directory, error)

    def listen(self) -> BellListener | None:
        """A socket of this process on which rings arrive; None if none can be bound."""
        path = self.directory / f"{os.getpid()}-{secrets.token_hex(6)}{_SUFFIX}"
        for _ in range(2):  # the last listener of another process may remove the directory
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                self._make_directory()
                sock.bind(str(path))
            except FileNotFoundError:
                sock.close()
                continue
            except OSError as error:
                sock.close()
                logger.debug("no bell at %s: %s", self.directory, error)
                return None
            sock.setblocking(False)
            return BellListener(sock, path)
        return None

    def _make_directory(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        found = self.directory.lstat()
        # Only this user's sockets: another user's directory could hold anything.
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
            raise PermissionError(f"{self.directory} is not a directory of this user's")


class BellListener:
    """One watcher's socket: ``wait`` returns early when the bell rings."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self._socket = sock
        self.path = path
        self._bound_by = (os.getpid(), path)
        _bound.add(self._bound_by)
        # poll, not select: select refuses descriptors past 1,024, which a busy server has.
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ring; True if one (or more) came."""
        if not self._poll.poll(timeout * 1000):
            return False
        with contextlib.suppress(BlockingIOError):
            while True:  # every ring so far is answered by one look
                self._socket.recv(1)
        return True

    def interrupt(self) -> None:
        """Make a ``wait`` under way (or the next) return at once."""
        with contextlib.suppress(OSError):
            self._socket.sendto(b"", str(self.path))

    def close(self) -> None:
        """Close the socket and remove its file (and the directory, if it was the last);
        in a forked child, only close it: the file is the parent's."""
        self._socket.close()
        if self._bound_by[0] == os.getpid():
            _bound.discard(self._bound_by)
            _remove(self.path)


def bell_for(database: str) -> Bell | None:
    """The bell of the SQLite file ``database``, or None where there can be none."""
    if not _can_ring():
        return None
    real = os.path.realpath(database)
    name = "tasktrail-bell-" + hashlib.sha256(real.encode()).hexdigest()[:16]
    return Bell(Path(tempfile.gettempdir()) / name)


@cache
def _can_ring() -> bool:
    """Whether this platform has Unix datagram sockets (asked once per process)."""
    if not all(hasattr(module, name) for module, name in _NEEDED):
        return False
    try:  # Windows has AF_UNIX, but no datagram sockets on it
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close()
    except OSError:
        return False
    return True


def _ring_one(sender: socket.socket, path: str) -> None:
    try:
        sender.sendto(b"", path)
    except ConnectionRefusedError:  # nothing is bound there: its process is gone
        _remove(Path(path))
    except OSError:  # a full socket (rings are waiting already), a file just removed
        pass


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
        path.parent.rmdir()  # if it was the last


@atexit.register
def _remove_own_sockets() -> None:
    for pid, path in list(_bound):
        if pid == os.getpid():
            _remove(path)
