"""Configuration from environment variables (names from the seeds), with defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return default
    return v.strip().lower() in ("1", "true", "yes", "on")


def _float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def _int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class Settings:
    library_path: Path | None  # CALIBRE_LIBRARY_PATH; None: not configured
    data_dir: Path  # DATA_DIR: the only place the app writes
    watch: bool  # WATCH_CALIBRE_DB
    cache_ttl: float  # CACHE_TTL (seconds) for cached responses; library changes evict at once
    cache_max_entries: int  # CACHE_MAX_ENTRIES
    busy_timeout: float  # SQLITE_BUSY_TIMEOUT (seconds)
    host: str  # HOST
    port: int  # PORT
    workers: int  # WEB_CONCURRENCY
    per_page: int  # PAGE_SIZE default page size
    thumbnail_width: int  # THUMBNAIL_WIDTH
    title: str  # SITE_TITLE
    log_level: str  # LOG_LEVEL

    @classmethod
    def from_env(cls) -> Settings:
        lib = os.environ.get("CALIBRE_LIBRARY_PATH", "").strip()
        return cls(
            library_path=Path(lib) if lib else None,
            data_dir=Path(os.environ.get("DATA_DIR", "").strip() or "/data"),
            watch=_bool("WATCH_CALIBRE_DB", True),
            cache_ttl=_float("CACHE_TTL", 3600.0),
            cache_max_entries=_int("CACHE_MAX_ENTRIES", 4096),
            busy_timeout=_float("SQLITE_BUSY_TIMEOUT", 2.0),
            host=os.environ.get("HOST", "0.0.0.0"),
            port=_int("PORT", 8000),
            workers=max(1, _int("WEB_CONCURRENCY", 1)),
            per_page=min(200, max(1, _int("PAGE_SIZE", 30))),
            thumbnail_width=min(1000, max(50, _int("THUMBNAIL_WIDTH", 240))),
            title=os.environ.get("SITE_TITLE", "Lectern"),
            log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        )
