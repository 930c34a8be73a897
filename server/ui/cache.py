"""A small per-app cache of slow figures (checks, shadow comparison, skew audit) for the UI's parts.

A part of a page that scans the prediction log is worked out at most once per `ttl` seconds for the
same key; viewers asking meanwhile get the same answer. One lock per key: two different keys are
worked out at the same time, two requests for the same key wait for one computation.

    cache = ttl_cache(request, "shadow")             # one per app and purpose (app.state)
    value = cache.get((model, aliases, days), lambda: slow())
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from fastapi import Request

from .render import app_part, renderer

T = TypeVar("T")
MAX_KEYS = 256  # beyond this, the oldest entries are dropped


class TTLCache(Generic[T]):
    """Values by key, each reused for `ttl` seconds after it was worked out."""

    def __init__(self, ttl: float = 60.0):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._values: dict[Hashable, tuple[float, T]] = {}

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value of `key`, from `compute()` when there is none younger than `ttl`."""
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            held = self._values.get(key)
            if held is not None and time.monotonic() - held[0] <= self.ttl:
                return held[1]
            value = compute()
            with self._lock:
                self._values.pop(key, None)  # re-inserted last: the dict is oldest first
                self._values[key] = (time.monotonic(), value)
                while len(self._values) > MAX_KEYS:
                    oldest = next(iter(self._values))
                    del self._values[oldest]
                    self._locks.pop(oldest, None)
            return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


def ttl_cache(request: Request, purpose: str, ttl: float = 60.0) -> TTLCache[Any]:
    """The app's cache for `purpose` (made on first use)."""
    caches: dict[str, TTLCache[Any]] = app_part(request, "ui_caches", dict)
    with renderer(request).lock:
        return caches.setdefault(purpose, TTLCache(ttl))


__all__ = ["TTLCache", "ttl_cache"]
