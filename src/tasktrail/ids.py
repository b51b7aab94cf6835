"""Time-sortable task ids: 26 characters, Crockford base32, ordered by creation time.

Ids made in one process are strictly increasing, even within one millisecond, so
"newest first" ordering by id is exact for tasks submitted by one process.
"""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "".join(reversed(chars))


def new_id() -> str:
    """A new id, greater than every id this process made before."""
    global _last
    millis = time.time_ns() // 1_000_000
    with _lock:
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, random = last_millis, last_random + 1
        else:
            random = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big") >> 1
        _last = (millis, random)
    return _encode(millis, 10) + _encode(random, 16)


_ID = re.compile(f"[{_ALPHABET}]{{26}}")


def is_task_id(text: str) -> bool:
    """Whether ``text`` has the shape of an id ``new_id`` makes: 26 characters of its
    lower-case Crockford base32 alphabet."""
    return _ID.fullmatch(text) is not None
