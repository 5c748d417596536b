"""The objects one app instance shares: settings, live library, caches, metrics."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request
from starlette.responses import Response

from .cache import CachedResponse, MemoryCache, response_size
from .config import Settings
from .covers import Thumbnails
from .library import Library
from .metrics import Metrics
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

    def _on_library(self, lib: Library) -> None:
        self.responses.clear()
        self.metrics.books.set(len(lib.books))

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
        etag = f'"v{lib.version}-{lib.library_id[:8]}-{hash(body) & 0xFFFFFFFF:x}"'
        headers["etag"] = etag
        raw = [(b"content-type", media_type.encode())] + [
            (k.encode(), v.encode()) for k, v in headers.items()
        ]
        raw.append((b"content-length", str(len(body)).encode()))
        key = response_key(lib.version, request.scope)
        self.responses.set(key, CachedResponse(200, raw, body, etag.encode()))
        return Response(body, media_type=media_type, headers=headers)


def response_key(version: int, scope: MutableMapping[str, Any]) -> str:
    qs = scope.get("query_string", b"")
    assert isinstance(qs, bytes)
    return f"{version}|{scope.get('path')}?{qs.decode('latin-1')}"


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
