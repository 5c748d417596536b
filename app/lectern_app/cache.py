"""Cache abstraction.

`Cache` is the interface the app codes against; `MemoryCache` (in-process LRU with TTL and
a byte budget) is the default. Issue 4 adds a Redis implementation (REDIS_URL) for data
shared between replicas (user lookups); responses rendered from the library stay in
process because they are keyed by the local library version.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

V = TypeVar("V")


class Cache(Protocol[V]):
    def get(self, key: str) -> V | None: ...
    def set(self, key: str, value: V, ttl: float | None = None) -> None: ...
    def delete(self, key: str) -> None: ...
    def clear(self) -> None: ...
    def ping(self) -> bool: ...


class MemoryCache(Generic[V]):
    """LRU with per-entry expiry, bounded by entry count and total size."""

    def __init__(
        self,
        max_entries: int = 4096,
        max_bytes: int = 32 * 1024 * 1024,
        default_ttl: float | None = None,
        sizeof: Callable[[V], int] = lambda v: 1,
        on_hit: Callable[[], None] | None = None,
        on_miss: Callable[[], None] | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.default_ttl = default_ttl
        self._sizeof = sizeof
        self._data: OrderedDict[str, tuple[V, float, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._on_hit = on_hit
        self._on_miss = on_miss

    def get(self, key: str) -> V | None:
        item = self._data.get(key)
        if item is None:
            if self._on_miss:
                self._on_miss()
            return None
        value, expires, _size = item
        if expires and expires < time.monotonic():
            self.delete(key)
            if self._on_miss:
                self._on_miss()
            return None
        with contextlib.suppress(KeyError):
            self._data.move_to_end(key)
        if self._on_hit:
            self._on_hit()
        return value

    def set(self, key: str, value: V, ttl: float | None = None) -> None:
        ttl = self.default_ttl if ttl is None else ttl
        expires = time.monotonic() + ttl if ttl else 0.0
        size = self._sizeof(value)
        if size > self.max_bytes // 4:
            return  # too big to be worth caching
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._data[key] = (value, expires, size)
            self._bytes += size
            while self._data and (
                len(self._data) > self.max_entries or self._bytes > self.max_bytes
            ):
                _k, (_v, _e, s) = self._data.popitem(last=False)
                self._bytes -= s

    def delete(self, key: str) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[2]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def ping(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return self._bytes


@dataclass(slots=True, frozen=True)
class CachedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes | None = None


def response_size(r: CachedResponse) -> int:
    return len(r.body) + 200
