"""Watch metadata.db, -journal and -wal; reload the library right after Calibre writes.

The per-request stamp check (state.py) is what guarantees freshness; the watcher makes
the reload happen before the next request arrives, so requests rarely wait for one.
Events are coalesced: a burst of writes (one `calibredb add`) causes few reloads.
Reloads after events are incremental; after QUIET_FULL_REREAD seconds of quiet one full
re-read follows, off the request path.

Only events that mean a write count. The app's own reads open and close metadata.db;
reacting to those (inotify IN_OPEN, IN_CLOSE_NOWRITE, IN_ACCESS) would make every reload
cause the next one: the app would never rest and the quiet re-read never come. The kernel
is not even asked for them. Where no events arrive at all (SMB, FUSE), the poll every
POLL_SECONDS is the fallback; it costs an os.stat while nothing changes (state.poll).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from .state import LibraryState

log = logging.getLogger("lectern.watcher")
QUIET_FULL_REREAD = 10.0
POLL_SECONDS = 2.0
WATCHED = {"metadata.db", "metadata.db-journal", "metadata.db-wal"}
# written, closed after writing, created, renamed over or away, deleted
WRITES = {
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_MOVED,
    EVENT_TYPE_DELETED,
}
WRITE_EVENTS: list[type[FileSystemEvent]] = [
    FileModifiedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileDeletedEvent,
]


class _Handler(FileSystemEventHandler):
    def __init__(self, kick: threading.Event) -> None:
        self.kick = kick

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in WRITES:  # observers that ignore event_filter
            return
        for p in (event.src_path, getattr(event, "dest_path", "")):
            name = Path(str(p)).name if p else ""
            if name in WATCHED:
                self.kick.set()
                return


class LibraryWatcher:
    def __init__(self, state: LibraryState, settle: float = 0.01) -> None:
        assert state.path is not None
        self.state = state
        self.settle = settle
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._thread = threading.Thread(target=self._loop, name="lectern-reloader", daemon=True)

    def start(self) -> None:
        assert self.state.path is not None
        obs = Observer()
        try:
            obs.schedule(
                _Handler(self._kick),
                str(self.state.path),
                recursive=False,
                event_filter=WRITE_EVENTS,
            )
            obs.start()
            self._observer = obs
        except OSError as e:  # library dir missing: the per-request check still works
            log.warning("cannot watch %s: %s", self.state.path, e)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
        self._thread.join(timeout=2)

    def _loop(self) -> None:
        last_event = 0.0
        while not self._stop.is_set():
            kicked = self._kick.wait(timeout=POLL_SECONDS)
            if self._stop.is_set():
                return
            try:
                if kicked:
                    self._kick.clear()
                    self._stop.wait(self.settle)  # coalesce a burst, but never wait long
                    self._kick.clear()
                    last_event = time.monotonic()
                    self.state.refresh()  # incremental, from last_modified
                    continue
                self.state.poll()  # fallback without events; retries a failed library
                # quiet since the last write event and since the last reload (requests and
                # polls reload too where no events arrive); once per burst of changes
                quiet = time.monotonic() - max(last_event, self.state.changed_at)
                if self.state.reread_pending and quiet > QUIET_FULL_REREAD:
                    self.state.full_reread()
            except Exception:  # pragma: no cover - keep the thread alive
                log.exception("reload failed")
