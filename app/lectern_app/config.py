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


def _str(name: str) -> str | None:
    v = os.environ.get(name, "").strip()
    return v or None


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
    # FORWARDED_ALLOW_IPS: peers whose X-Forwarded-For/-Proto name the real client (login
    # limits, logs): comma-separated IPs/CIDRs, `gateway` (this container's default
    # gateway: where the host's proxy connects from), or empty to believe no one
    forwarded_allow_ips: str = "127.0.0.1"
    # ---- storage and shared cache; all off when the variables are unset
    redis_url: str | None = None  # REDIS_URL: shared response cache + cross-replica bus
    use_s3_covers: bool = False  # USE_S3_COVERS
    s3_bucket: str = ""  # S3_BUCKET_NAME
    s3_covers_prefix: str = "covers/"  # S3_COVERS_PREFIX
    s3_region: str | None = None  # AWS_REGION / AWS_DEFAULT_REGION
    s3_endpoint_url: str | None = None  # S3_ENDPOINT_URL / AWS_ENDPOINT_URL (MinIO, moto, ...)
    s3_presign_expiry: int = 3600  # S3_PRESIGN_EXPIRY (seconds)
    s3_manifest_refresh: float = 30.0  # S3_CHECK_INTERVAL: manifest re-check + S3 probe (s)
    cdn_domain: str | None = None  # CDN_DOMAIN: redirect to https://CDN_DOMAIN/<key>
    use_google_drive: bool = False  # USE_GOOGLE_DRIVE
    google_drive_credentials_path: str | None = None  # GOOGLE_DRIVE_CREDENTIALS_PATH
    google_drive_folder_id: str = ""  # GOOGLE_DRIVE_FOLDER_ID
    google_drive_api_url: str | None = None  # GOOGLE_DRIVE_API_URL (endpoint override)
    google_drive_chunk_size: int = 4 * 1024 * 1024  # GOOGLE_DRIVE_CHUNK_SIZE (bytes)

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
            forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1").strip(),
            redis_url=_str("REDIS_URL"),
            use_s3_covers=_bool("USE_S3_COVERS", False),
            s3_bucket=_str("S3_BUCKET_NAME") or "",
            s3_covers_prefix=os.environ.get("S3_COVERS_PREFIX", "covers/").lstrip("/"),
            s3_region=_str("AWS_REGION") or _str("AWS_DEFAULT_REGION"),
            s3_endpoint_url=_str("S3_ENDPOINT_URL") or _str("AWS_ENDPOINT_URL"),
            s3_presign_expiry=min(604800, max(60, _int("S3_PRESIGN_EXPIRY", 3600))),
            s3_manifest_refresh=max(5.0, _float("S3_CHECK_INTERVAL", 30.0)),
            cdn_domain=_str("CDN_DOMAIN"),
            use_google_drive=_bool("USE_GOOGLE_DRIVE", False),
            google_drive_credentials_path=_str("GOOGLE_DRIVE_CREDENTIALS_PATH"),
            google_drive_folder_id=_str("GOOGLE_DRIVE_FOLDER_ID") or "",
            google_drive_api_url=_str("GOOGLE_DRIVE_API_URL"),
            google_drive_chunk_size=max(256 * 1024, _int("GOOGLE_DRIVE_CHUNK_SIZE", 4 << 20)),
        )
