"""Books on Google Drive (USE_GOOGLE_DRIVE): metadata.db stays local, files come from Drive.

The Drive folder GOOGLE_DRIVE_FOLDER_ID mirrors the Calibre library (for example synced
with `rclone sync LIBRARY gdrive:Calibre --exclude "metadata.db*"`): a book's file is found
at Author/Title (id)/file.ext exactly as in the library folder, one `files.list` per path
component (results cached). Downloads are streamed in GOOGLE_DRIVE_CHUNK_SIZE pieces, each
one `files.get?alt=media` request with a Range header, so large files never sit in memory
and HTTP Range requests from readers map onto Drive ranges.

Credentials: a service account key file (GOOGLE_DRIVE_CREDENTIALS_PATH) with read access to
the folder. GOOGLE_DRIVE_API_URL overrides the API endpoint (a proxy, or a test server).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from .metrics import StorageMetrics

log = logging.getLogger("lectern.storage.gdrive")

SCOPES = ["https://www.googleapis.com/auth/drive.readonly"]
FOLDER = "application/vnd.google-apps.folder"
RESOLVE_TTL = 300.0  # seconds a resolved id is trusted (a 404 drops it earlier)
_FIELDS = "files(id,name,mimeType,size,md5Checksum,modifiedTime)"


class DriveError(Exception):
    """Drive could not be asked (network, auth, quota): the caller may fall back."""


@dataclass(frozen=True, slots=True)
class DriveFile:
    id: str
    name: str
    size: int
    md5: str | None
    modified: str | None


def _q_escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace("'", "\\'")


class DriveBooks:
    def __init__(self, settings: Settings, metrics: StorageMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.root = settings.google_drive_folder_id
        self.chunk = settings.google_drive_chunk_size
        self.ok = True
        self.last_error: str | None = None
        self.since = time.time()
        self._service: Any = None
        self._creds: Any = None
        self._local = threading.local()
        self._ids: dict[tuple[str, str, bool], tuple[float, DriveFile]] = {}
        self._lock = threading.Lock()
        self.api_calls = 0

    # ------------------------------------------------------------- clients
    def _client(self) -> tuple[Any, Any]:
        """(service, http) for this thread: httplib2 connections are not thread-safe."""
        if self._service is None:
            with self._lock:
                if self._service is None:
                    from googleapiclient.discovery import build

                    self._creds = self._credentials()
                    opts = (
                        {"api_endpoint": self.settings.google_drive_api_url}
                        if self.settings.google_drive_api_url
                        else None
                    )
                    self._service = build(
                        "drive",
                        "v3",
                        credentials=self._creds,
                        client_options=opts,
                        static_discovery=True,
                        cache_discovery=False,
                    )
        http = getattr(self._local, "http", None)
        if http is None:
            import google_auth_httplib2
            import httplib2

            http = google_auth_httplib2.AuthorizedHttp(self._creds, http=httplib2.Http(timeout=30))
            self._local.http = http
        return self._service, http

    def _credentials(self) -> Any:
        path = self.settings.google_drive_credentials_path
        if path:
            from google.oauth2 import service_account

            load = service_account.Credentials.from_service_account_file
            return load(path, scopes=SCOPES)  # type: ignore[no-untyped-call]
        import google.auth

        creds, _project = google.auth.default(scopes=SCOPES)  # workload identity, gcloud ADC
        return creds

    def _execute(self, request: Any, http: Any) -> Any:
        from googleapiclient.errors import HttpError

        self.api_calls += 1
        try:
            result = request.execute(http=http, num_retries=1)
        except HttpError as e:
            if e.resp.status in (404, 416):
                raise
            self._failed(f"HttpError {e.resp.status}")
            raise DriveError(f"Drive answered {e.resp.status}") from None
        except Exception as e:  # network, token endpoint, bad credentials file
            self._failed(type(e).__name__)
            raise DriveError(f"Drive unreachable: {type(e).__name__}") from None
        self._succeeded()
        return result

    def _failed(self, error: str) -> None:
        if self.ok:
            log.warning("Google Drive failing (%s)", error)
            self.since = time.time()
        self.ok = False
        self.last_error = error
        self.metrics.up.labels("google_drive").set(0)

    def _succeeded(self) -> None:
        if not self.ok:
            log.info("Google Drive answering again")
            self.since = time.time()
        self.ok = True
        self.last_error = None
        self.metrics.up.labels("google_drive").set(1)

    # ----------------------------------------------------------- resolving
    def _child(self, parent: str, name: str, folder: bool) -> DriveFile | None:
        key = (parent, name, folder)
        hit = self._ids.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        service, http = self._client()
        kind = f"mimeType = '{FOLDER}'" if folder else f"mimeType != '{FOLDER}'"
        q = f"'{_q_escape(parent)}' in parents and name = '{_q_escape(name)}' and {kind}"
        q += " and trashed = false"
        req = service.files().list(
            q=q,
            fields=_FIELDS,
            pageSize=10,
            orderBy="modifiedTime desc",
            supportsAllDrives=True,
            includeItemsFromAllDrives=True,
        )
        files = self._execute(req, http).get("files", [])
        if not files:
            self._ids.pop(key, None)
            return None
        f = files[0]  # Drive allows duplicate names: the newest wins
        found = DriveFile(
            id=str(f["id"]),
            name=str(f.get("name", name)),
            size=int(f.get("size", 0) or 0),
            md5=f.get("md5Checksum"),
            modified=f.get("modifiedTime"),
        )
        if len(self._ids) > 100000:
            self._ids.clear()
        self._ids[key] = (time.monotonic() + RESOLVE_TTL, found)
        return found

    def resolve(self, book_path: str, filename: str) -> DriveFile | None:
        """The Drive file at <root>/<book_path>/<filename> (Calibre's layout), or None."""
        parts = [p for p in book_path.replace("\\", "/").split("/") if p]
        if any(p in (".", "..") for p in parts) or "/" in filename or filename in (".", ".."):
            return None
        parent = self.root
        for part in parts:
            folder = self._child(parent, part, folder=True)
            if folder is None:
                return None
            parent = folder.id
        return self._child(parent, filename, folder=False)

    def forget(self, book_path: str, filename: str) -> None:
        """Drop cached ids along this path (after a 404: the file moved)."""
        self._ids.clear()

    # ----------------------------------------------------------- streaming
    def read_range(self, f: DriveFile, start: int, end: int) -> bytes:
        """Bytes start..end (inclusive) of the file: one ranged files.get?alt=media."""
        service, http = self._client()
        req = service.files().get_media(fileId=f.id, supportsAllDrives=True)
        req.headers["range"] = f"bytes={start}-{end}"
        data: bytes = self._execute(req, http)
        self.metrics.remote_bytes.labels("google_drive").inc(len(data))
        return data

    def chunks(self, f: DriveFile, start: int, end: int) -> Iterator[tuple[int, int]]:
        pos = start
        while pos <= end:
            stop = min(end, pos + self.chunk - 1)
            yield pos, stop
            pos = stop + 1

    def close(self) -> None:
        self._ids.clear()

    def status(self) -> dict[str, Any]:
        return {
            "backend": "google_drive",
            "ok": self.ok,
            "folder_id": self.root,
            "error": self.last_error,
            "api_calls": self.api_calls,
            "since": self.since,
        }
