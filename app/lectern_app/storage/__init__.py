"""Where covers and book files come from: local disk (default), S3 covers, Google Drive books.

`Storage` holds the optional remote backends of one app instance. With none of
USE_S3_COVERS / USE_GOOGLE_DRIVE set it is empty and the app serves everything from the
library folder exactly as before.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..config import Settings
from .metrics import StorageMetrics

if TYPE_CHECKING:
    from ..services import Services
    from .gdrive import DriveBooks
    from .s3covers import S3Covers

log = logging.getLogger("lectern.storage")


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


class Storage:
    def __init__(self, settings: Settings, svc: Services) -> None:
        self.settings = settings
        self.metrics = StorageMetrics(svc.metrics.registry)
        self.covers: S3Covers | None = None
        self.drive: DriveBooks | None = None
        if settings.use_s3_covers:
            if not settings.s3_bucket:
                log.error("USE_S3_COVERS is set but S3_BUCKET_NAME is not: covers stay local")
            else:
                from .s3covers import S3Covers

                self.covers = S3Covers(settings)
                up = self.metrics.up.labels("s3_covers")
                was_ok = [False]

                def on_state(ok: bool) -> None:
                    up.set(1 if ok else 0)
                    if was_ok[0] and not ok:
                        svc.responses.clear()  # no cached redirect outlives a failing S3
                    was_ok[0] = ok

                self.covers.on_state = on_state
                log.info("S3 cover storage initialized (bucket %s)", settings.s3_bucket)
        if settings.use_google_drive:
            if not settings.google_drive_folder_id:
                log.error("USE_GOOGLE_DRIVE is set but GOOGLE_DRIVE_FOLDER_ID is not")
            else:
                from .gdrive import DriveBooks

                self.drive = DriveBooks(settings, self.metrics)
                log.info("Google Drive storage initialized")

    def start(self) -> None:
        if self.covers is not None:
            self.covers.start()

    def close(self) -> None:
        if self.covers is not None:
            self.covers.close()
        if self.drive is not None:
            self.drive.close()

    def covers_changed(self, payload: dict[str, Any]) -> None:
        if self.covers is not None:
            self.covers.recheck()

    @property
    def healthy(self) -> bool:
        ok = True
        if self.covers is not None:
            ok = ok and self.covers.ok
        if self.drive is not None:
            ok = ok and self.drive.ok
        return ok

    def status(self) -> dict[str, Any] | None:
        if self.covers is None and self.drive is None:
            return None
        out: dict[str, Any] = {"covers": {"backend": "local"}, "books": {"backend": "local"}}
        if self.covers is not None:
            st = self.covers.status()
            st["since"] = _iso(st["since"])
            out["covers"] = st
        if self.drive is not None:
            st = self.drive.status()
            st["since"] = _iso(st["since"])
            out["books"] = st
        return out
