"""Prometheus metrics: request latency, cache hits/misses, library reloads."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "lectern_http_request_duration_seconds",
            "HTTP request latency by route group and status class",
            ["route", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "lectern_cache_hits_total", "Cache hits", ["cache"], registry=self.registry
        )
        self.cache_misses = Counter(
            "lectern_cache_misses_total", "Cache misses", ["cache"], registry=self.registry
        )
        self.reloads = Counter(
            "lectern_library_reloads_total",
            "Library (re)loads by result (ok, missing, locked, io, corrupt, invalid)",
            ["result"],
            registry=self.registry,
        )
        self.reload_seconds = Histogram(
            "lectern_library_reload_seconds",
            "Time to load the library into memory",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.books = Gauge("lectern_library_books", "Books in the library", registry=self.registry)
        self._children: dict[tuple[str, str], object] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, f"{status // 100}xx")
        child = self._children.get(key)
        if child is None:
            child = self.latency.labels(*key)
            self._children[key] = child
        child.observe(seconds)  # type: ignore[attr-defined]

    def on_reload(self, result: str, seconds: float) -> None:
        self.reloads.labels(result).inc()
        if result == "ok":
            self.reload_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_API_GROUPS = frozenset(
    {"health", "books", "authors", "series", "tags", "publishers", "languages", "files"}
    | {"auth", "admin", "user", "docs", "openapi.json"}
)


def route_group(path: str) -> str:
    """A small fixed set of label values (never raw paths: unbounded cardinality, and
    any client could mint new series by asking for paths that do not exist)."""
    if path.startswith("/api/"):
        parts = path.split("/")
        if parts[2] not in _API_GROUPS:
            return "/api/other"
        if len(parts) > 3 and parts[2] == "files":
            return "/api/files/" + (parts[3] if parts[3] in ("download", "cover") else "other")
        if len(parts) > 3 and parts[2] == "books":
            return "/api/books/{id}"
        return "/api/" + parts[2]
    if path.startswith("/opds"):
        return "/opds"
    if path.startswith("/static/"):
        return "/static"
    if path == "/metrics":
        return "/metrics"
    return "/web"
