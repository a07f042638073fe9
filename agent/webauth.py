"""Basic auth and the rate limit of --web.config.file: bcrypt checks with a bounded cache of
their outcomes (bcrypt is meant to be slow), a dummy hash for unknown users, the
Authorization header's credentials, a token bucket."""

from __future__ import annotations

import base64
import binascii
import collections
import threading
import time
from collections.abc import Callable
from typing import Optional

AUTH_CACHE_ENTRIES = 256


class AuthCache:
    """Outcomes of password checks by a digest of (user, password, hash): bounded LRU."""

    def __init__(self, entries: int = AUTH_CACHE_ENTRIES) -> None:
        self._entries = entries
        self._data: collections.OrderedDict[bytes, bool] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> Optional[bool]:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: bytes, ok: bool) -> None:
        with self._lock:
            self._data[key] = ok
            self._data.move_to_end(key)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)


# A hash (cost 10) to check unknown users against, so that a wrong user costs what a wrong
# password does and user names cannot be told apart by timing.
DUMMY_HASH = b"$2b$10$V4LqGED8SLKUPp78840ygO9rYRq8hdgGp1CB/yxR9jVYU1cIhKBuW"


def check_password(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # only with basic_auth_users: the one optional dependency of the server

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # a malformed stored hash: refuse (the config check makes this rare)
        return False


class TokenBucket:
    def __init__(self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.burst, self._clock = interval, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) / self.interval)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def basic_credentials(header: str) -> tuple[Optional[str], bytes]:
    if header[:6].lower() != "basic ":
        return None, b""
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, b""
    user, sep, password = raw.partition(b":")
    if not sep:
        return None, b""
    return user.decode("utf-8", "replace"), password
