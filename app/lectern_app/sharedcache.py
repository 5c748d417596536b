"""A response cache shared by replicas through Redis (REDIS_URL): the second tier.

The in-process `MemoryCache` stays the first tier (the fast path answers from it). On a
first-tier miss the fast path asks Redis; responses rendered by one replica are served by
the others without rendering them again.

Keys are `lectern:r:<fingerprint>:<path>?<query>`. The fingerprint is derived from the
library's *content* (library_id, every book's id and last_modified, the category table
signatures), not from the replica-local version counter, so replicas reading the same
library agree on it and a replica can never be served a response rendered from another
snapshot: after a change the keys simply differ, old entries expire (CACHE_TTL).

Reads use the asyncio client on the server's event loop; writes go through one writer
thread (requests never wait for them). Any Redis error opens a short circuit breaker:
the app keeps serving from memory and the health endpoint reports the cache as down.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import struct
import threading
import time
from array import array
from typing import Any

from .cache import CachedResponse
from .library import Library

log = logging.getLogger("lectern.sharedcache")

KEY_PREFIX = "lectern:r:"
BREAKER_SECONDS = 2.0
_HEAD = struct.Struct("!HI")  # status, header length


def library_fingerprint(lib: Library) -> str:
    """The same string in every replica that reads the same library content."""
    h = hashlib.blake2b(digest_size=12)
    h.update(lib.library_id.encode())
    h.update(repr(sorted(lib.raw.name_sigs.items())).encode())
    ids = sorted(lib.books)
    h.update(array("q", ids).tobytes())
    h.update(array("d", (lib.books[i].last_modified_epoch for i in ids)).tobytes())
    return h.hexdigest()


def encode(r: CachedResponse) -> bytes:
    meta = json.dumps(
        {
            "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in r.headers],
            "e": r.etag.decode("latin-1") if r.etag is not None else None,
        },
        separators=(",", ":"),
    ).encode()
    return _HEAD.pack(r.status, len(meta)) + meta + r.body


def decode(data: bytes) -> CachedResponse | None:
    try:
        status, n = _HEAD.unpack_from(data)
        meta = json.loads(data[_HEAD.size : _HEAD.size + n])
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in meta["h"]]
        etag = meta["e"].encode("latin-1") if meta["e"] is not None else None
        return CachedResponse(status, headers, data[_HEAD.size + n :], etag)
    except (struct.error, ValueError, KeyError, TypeError, AttributeError):
        return None


class SharedResponses:
    def __init__(self, url: str, ttl: float) -> None:
        import redis
        import redis.asyncio

        self.url = url
        self.ttl = max(1, int(ttl))
        self._async = redis.asyncio.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25
        )
        self._sync = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=0.5)
        self._down_until = 0.0
        self.errors = 0
        self.last_error: str | None = None
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._q: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=2000)
        self._writer = threading.Thread(target=self._write_loop, name="lectern-rcache", daemon=True)

    def start(self) -> None:
        self._writer.start()

    # ------------------------------------------------------------------ API
    @staticmethod
    def key(fingerprint: str, path_and_query: str) -> str:
        return f"{KEY_PREFIX}{fingerprint}:{path_and_query}"

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def get(self, key: str) -> CachedResponse | None:
        if not self.available:
            return None
        try:
            data = await self._async.get(key)
        except Exception as e:  # redis.RedisError, OSError, asyncio.TimeoutError
            self._fail(e)
            return None
        if data is None:
            self.misses += 1
            return None
        r = decode(data) if isinstance(data, bytes) else None
        if r is None:
            self.misses += 1
            return None
        self.hits += 1
        return r

    def set(self, key: str, r: CachedResponse) -> None:
        if not self.available or len(r.body) > 1024 * 1024:
            return
        with contextlib.suppress(queue.Full):  # Redis slow: a skipped write costs one render
            self._q.put_nowait((key, encode(r)))

    def ping(self) -> bool:
        try:
            ok = bool(self._sync.ping())
        except Exception as e:
            self._fail(e)
            return False
        if ok:
            self._down_until = 0.0
        return ok

    def flush_pending(self, timeout: float = 2.0) -> None:
        """Wait until queued writes are sent (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        if self._writer.is_alive():
            self._q.put(None)
            self._writer.join(timeout=2)
        self._sync.close()

    def status(self) -> dict[str, Any]:
        return {
            "ok": self.available,
            "hits": self.hits,
            "misses": self.misses,
            "writes": self.writes,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    # -------------------------------------------------------------- private
    def _fail(self, e: BaseException) -> None:
        self.errors += 1
        self.last_error = type(e).__name__
        if self.available:
            log.warning("shared cache: Redis error (%s); serving from memory", type(e).__name__)
        self._down_until = time.monotonic() + BREAKER_SECONDS

    def _write_loop(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                key, data = item
                if not self.available:
                    continue
                try:
                    self._sync.set(key, data, ex=self.ttl)
                    self.writes += 1
                except Exception as e:
                    self._fail(e)
            finally:
                self._q.task_done()
