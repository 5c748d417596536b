"""Covers on S3 (USE_S3_COVERS): redirects to presigned URLs or to a CDN domain.

Layout in the bucket (S3_COVERS_PREFIX, default `covers/`):
    covers/<book_id>.jpg                 the original cover.jpg
    covers/thumbs/<book_id>-w<W>.jpg     the thumbnail (THUMBNAIL_WIDTH)
    covers/manifest.json                 what was uploaded: md5 and size per book

`python -m lectern_app covers upload` writes the objects and the manifest. The app reads
the manifest and redirects only when the object in the bucket is the current cover (its
md5 equals the local cover.jpg's, computed once per file version); a cover changed or
added since the last upload is served from local disk until the next upload. The manifest
is re-checked every S3_CHECK_INTERVAL seconds (an ETag compare; also the health probe) and
at once when the upload command announces a change on the bus. While S3 fails, covers
are served from local disk and /api/health says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..config import Settings

log = logging.getLogger("lectern.storage.s3")

MANIFEST = "manifest.json"


def s3_client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    cfg = Config(
        signature_version="s3v4",
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    return boto3.client(
        "s3",
        region_name=settings.s3_region or "us-east-1",
        endpoint_url=settings.s3_endpoint_url,
        config=cfg,
    )


def original_key(prefix: str, book_id: int) -> str:
    return f"{prefix}{book_id}.jpg"


def thumb_key(prefix: str, book_id: int, width: int) -> str:
    return f"{prefix}thumbs/{book_id}-w{width}.jpg"


def file_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def short_error(e: BaseException) -> str:
    """An error description without URLs, keys or signatures."""
    code = (
        getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
    )
    return f"{type(e).__name__}: {code}" if code else type(e).__name__


class S3Covers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_covers_prefix
        self.expiry = settings.s3_presign_expiry
        self.cdn = (settings.cdn_domain or "").strip().rstrip("/")
        self.width = settings.thumbnail_width
        self.client = s3_client(settings)
        self.manifest: dict[str, Any] = {}
        self.manifest_etag: str | None = None
        self.library_id: str | None = None
        self.ok = False  # no successful check yet: serve local
        self.checked = False
        self.last_error: str | None = None
        self.since = time.time()
        self._md5: dict[tuple[str, int, int], str] = {}
        self._urls: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lectern-s3covers", daemon=True)
        self.on_state: Any = None  # callable(ok: bool)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread.is_alive():
            self._thread.join(timeout=3)

    def recheck(self) -> None:
        self._kick.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check()
            interval = self.settings.s3_manifest_refresh
            if not self.ok:
                interval = min(interval, 15.0)
            self._kick.wait(interval)
            self._kick.clear()

    def check(self) -> bool:
        """Re-read the manifest if it changed; the S3 health probe."""
        key = self.prefix + MANIFEST
        try:
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except Exception as e:
                code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
                if code in ("404", "NoSuchKey", "NotFound"):
                    # nothing uploaded yet; the bucket must exist though
                    self.client.head_bucket(Bucket=self.bucket)
                    self._set_manifest({}, None)
                    self._set_ok(True, None)
                    return True
                raise
            etag = str(head.get("ETag", ""))
            if etag != self.manifest_etag:
                body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                data = json.loads(body)
                self._set_manifest(data, etag)
            self._set_ok(True, None)
            return True
        except Exception as e:  # botocore errors, connection errors, bad JSON
            self._set_ok(False, short_error(e))
            return False
        finally:
            self.checked = True

    def _set_manifest(self, data: dict[str, Any], etag: str | None) -> None:
        covers = data.get("covers", {}) if isinstance(data, dict) else {}
        self.manifest = covers if isinstance(covers, dict) else {}
        self.library_id = data.get("library_id") if isinstance(data, dict) else None
        self.manifest_etag = etag
        self._urls.clear()
        log.info("S3 cover manifest: %d covers", len(self.manifest))

    def _set_ok(self, ok: bool, error: str | None) -> None:
        if ok != self.ok:
            self.since = time.time()
            if ok:
                log.info("S3 covers available (bucket %s)", self.bucket)
            else:
                log.warning("S3 covers failing (%s): serving covers from local disk", error)
        self.ok = ok
        self.last_error = error
        if self.on_state is not None:
            self.on_state(ok)

    # -------------------------------------------------------------- serving
    def local_md5(self, path: Path) -> str | None:
        try:
            st = path.stat()
        except OSError:
            return None
        k = (str(path), st.st_mtime_ns, st.st_size)
        md5 = self._md5.get(k)
        if md5 is None:
            try:
                md5 = file_md5(path)
            except OSError:
                return None
            if len(self._md5) > 50000:
                self._md5.clear()
            self._md5[k] = md5
        return md5

    def url_for(
        self, book_id: int, library_id: str, local_cover: Path | None, thumb: bool
    ) -> str | None:
        """Where to redirect for this cover, or None to serve it locally."""
        if not self.ok:
            return None
        entry = self.manifest.get(str(book_id))
        if not isinstance(entry, dict):
            return None
        if self.library_id and self.library_id != library_id:
            return None
        md5 = entry.get("md5")
        if local_cover is not None and self.local_md5(local_cover) != md5:
            return None  # changed since the upload: the bucket holds an old cover
        if thumb:
            t = entry.get("thumb")
            if not isinstance(t, dict) or t.get("width") != self.width or t.get("src") != md5:
                return None
            key = thumb_key(self.prefix, book_id, self.width)
            version = str(t.get("md5", ""))[:12]
        else:
            key = original_key(self.prefix, book_id)
            version = str(md5)[:12]
        if self.cdn:
            base = self.cdn if "://" in self.cdn else f"https://{self.cdn}"
            return f"{base}/{key}?v={version}"
        return self.presigned(key, version)

    def presigned(self, key: str, version: str) -> str:
        """A presigned GET, reused for half its lifetime (browsers can cache the image)."""
        now = time.time()
        memo = self._urls.get(key)
        if memo is not None and memo[0].endswith(version) and now - memo[1] < self.expiry / 2:
            return memo[0].rsplit("#", 1)[0]
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.expiry
        )
        if len(self._urls) > 50000:
            self._urls.clear()
        self._urls[key] = (f"{url}#{version}", now)
        return url

    def status(self) -> dict[str, Any]:
        return {
            "backend": "s3",
            "ok": self.ok,
            "serving": "redirect" if self.ok else "local (fallback)",
            "bucket": self.bucket,
            "cdn": self.cdn or None,
            "objects": len(self.manifest),
            "error": self.last_error,
            "since": self.since,
        }
