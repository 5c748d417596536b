"""Prometheus metrics of storage backends, the shared cache and the bus."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class StorageMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "lectern_storage_up",
            "1 when a remote store answers (s3_covers, google_drive, redis), 0 when failing",
            ["store"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "lectern_storage_fallbacks_total",
            "Requests answered from local disk because a remote store failed",
            ["store"],
            registry=registry,
        )
        self.redirects = Counter(
            "lectern_cover_redirects_total",
            "Cover requests answered with a redirect (s3 presigned or cdn)",
            ["target"],
            registry=registry,
        )
        self.remote_bytes = Counter(
            "lectern_storage_remote_bytes_total",
            "Bytes streamed from a remote store",
            ["store"],
            registry=registry,
        )
        self.bus_messages = Counter(
            "lectern_bus_messages_total",
            "Bus messages by channel and direction (published, received)",
            ["channel", "direction"],
            registry=registry,
        )
