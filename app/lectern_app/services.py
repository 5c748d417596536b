"""The objects one app instance shares: settings, live library, caches, metrics."""

from __future__ import annotations

import zlib
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request
from starlette.responses import Response

from .bus import Bus, make_bus
from .cache import CachedResponse, MemoryCache, response_size
from .config import Settings
from .covers import Thumbnails
from .library import Library
from .metrics import Metrics
from .sharedcache import SharedResponses, library_fingerprint
from .state import LibraryState

SCOPE_LIBRARY = "lectern.library"


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.state = LibraryState(
            settings.library_path,
            busy_timeout=settings.busy_timeout,
            on_reload=self.metrics.on_reload,
        )
        hits = self.metrics.cache_hits.labels("responses")
        misses = self.metrics.cache_misses.labels("responses")
        self.responses: MemoryCache[CachedResponse] = MemoryCache(
            max_entries=settings.cache_max_entries,
            max_bytes=24 * 1024 * 1024,
            default_ttl=settings.cache_ttl,
            sizeof=response_size,
            on_hit=hits.inc,
            on_miss=misses.inc,
        )
        self.state.add_listener(self._on_library)
        self.thumbnails = Thumbnails(settings.data_dir, settings.thumbnail_width)
        # storage and shared cache: in-process bus and no second tier by default
        self.bus: Bus = make_bus(settings.redis_url)
        self.shared: SharedResponses | None = (
            SharedResponses(settings.redis_url, settings.cache_ttl) if settings.redis_url else None
        )
        self._fingerprint: tuple[int, str, str] = (-1, "", "")  # version, content, key part
        self.shared_hits = self.metrics.cache_hits.labels("shared")
        self.shared_misses = self.metrics.cache_misses.labels("shared")
        from .replicas import Replicas
        from .storage import Storage

        self.storage = Storage(settings, self)
        self.replicas = Replicas(self)

    def start(self) -> None:
        """Background parts: the bus listener, the shared-cache writer, storage refreshers."""
        if self.shared is not None:
            self.shared.start()
        self.bus.start()
        self.storage.start()

    def close(self) -> None:
        self.replicas.close()
        self.storage.close()
        self.bus.close()
        if self.shared is not None:
            self.shared.close()

    def _on_library(self, lib: Library) -> None:
        self.responses.clear()
        self.metrics.books.set(len(lib.books))
        if self.shared is not None or self.bus.kind != "local":
            self.replicas.library_changed(lib)

    def fingerprint(self, lib: Library) -> str:
        """Content fingerprint of this snapshot: the shared cache's key part."""
        version, _content, key = self._fingerprint
        if version == lib.version:
            return key
        content = library_fingerprint(lib)
        if content == self._fingerprint[1]:
            # a new snapshot with the same fingerprint (a change the fingerprint cannot
            # see, e.g. found by the full re-read): never share it under the old key
            key = f"{content}.{self.bus.instance}.{lib.version}"
        else:
            key = content
        self._fingerprint = (lib.version, content, key)
        return key

    def library(self, request: Request) -> Library:
        """The fresh library for this request, or a clear 503."""
        lib: Library | None = request.scope.get(SCOPE_LIBRARY)
        if lib is None:
            lib = self.state.get()
        if lib is None:
            st = self.state.status
            raise HTTPException(
                status_code=503,
                detail={"error": "library_unavailable", "reason": st.kind, "message": st.message},
            )
        return lib

    def cached(
        self,
        request: Request,
        lib: Library,
        media_type: str,
        build: Callable[[], bytes],
        extra_headers: dict[str, str] | None = None,
    ) -> Response:
        """Build a response body once per library version and URL; later hits skip FastAPI."""
        body = build()
        headers = {"cache-control": "no-cache", **(extra_headers or {})}
        # the same in every replica (the shared cache hands one replica's render to others)
        etag = f'"{lib.library_id[:8]}-{zlib.crc32(body):08x}-{len(body):x}"'
        headers["etag"] = etag
        raw = [(b"content-type", media_type.encode())] + [
            (k.encode(), v.encode()) for k, v in headers.items()
        ]
        raw.append((b"content-length", str(len(body)).encode()))
        key = response_key(lib.version, request.scope)
        entry = CachedResponse(200, raw, body, etag.encode())
        self.responses.set(key, entry)
        if self.shared is not None:
            self.shared.set(
                self.shared.key(self.fingerprint(lib), path_query(request.scope)), entry
            )
        return Response(body, media_type=media_type, headers=headers)


def response_key(version: int, scope: MutableMapping[str, Any]) -> str:
    return f"{version}|{path_query(scope)}"


def path_query(scope: MutableMapping[str, Any]) -> str:
    qs = scope.get("query_string", b"")
    assert isinstance(qs, bytes)
    return f"{scope.get('path')}?{qs.decode('latin-1')}"


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
