"""Books on Google Drive (USE_GOOGLE_DRIVE)."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from .metrics import StorageMetrics


class DriveBooks:
    def __init__(self, settings: Settings, metrics: StorageMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.ok = True
        self.since = 0.0

    def close(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"backend": "google_drive", "ok": self.ok, "since": self.since}
