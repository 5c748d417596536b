"""Sliding-window limiter for login attempts (per client IP and per account)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class SlidingWindow:
    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """0 when another attempt is allowed, else whole seconds to wait."""
        now = time.monotonic()
        with self._lock:
            q = self._hits.get(key)
            if q is None:
                return 0
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) < self.limit:
                return 0
            return max(1, math.ceil(q[0] + self.window - now))

    def hit(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if key not in self._hits and len(self._hits) >= self.max_keys:
                self._prune(now)
            q = self._hits.setdefault(key, deque())
            q.append(now)
            while len(q) > self.limit:
                q.popleft()

    def reset(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)

    def _prune(self, now: float) -> None:
        for k in [k for k, q in self._hits.items() if not q or q[-1] <= now - self.window]:
            del self._hits[k]
        while len(self._hits) >= self.max_keys:
            self._hits.pop(next(iter(self._hits)))
