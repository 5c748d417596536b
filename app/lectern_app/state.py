"""The live library: a cheap per-request freshness check and single-flight reloads.

Freshness is decided by a *stamp*: os.stat of metadata.db (inode, size, mtime) and of
metadata.db-wal, the database header's file change counter (bumped by every commit in
rollback-journal mode) and the WAL index header's change counter (bumped by every commit
in WAL mode). Computing it costs a few microseconds, so every request checks it; a
changed stamp reloads the whole library (library_id tells a replaced library apart)
before the request is answered. `PRAGMA data_version` on a long-lived connection was
tried as a confirmation step and dropped: after calibre checkpoints and deletes the WAL,
an idle reader's data_version did not move although the data had changed. The file watcher
(watcher.py) reloads ahead of requests, so most requests never wait.

The watcher's periodic check (poll) must not open the file while nothing changes: it
trusts a plain os.stat once the files were last written well before the full stamp was
confirmed, the way git trusts an index entry that is not "racily clean".
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import reader
from .library import Library
from .reader import LibraryError

log = logging.getLogger("lectern.library")

Stamp = tuple[object, ...]
CHECK_INTERVAL = 0.001  # at most one stamp check per millisecond
# A stamp check slower than this means the library's file system stalls (a network mount
# whose server went away: a FUSE stat then blocks for the mount's timeout). Requests stop
# checking inline for OFFLOAD_SECONDS and are served from memory while one background
# thread keeps checking, so a dead mount never blocks the event loop again; the host's
# switch to a replica is picked up by that thread.
SLOW_CHECK = 0.25
OFFLOAD_SECONDS = 30.0
# A write that leaves size and inode alone still moves the mtime, unless it lands within
# the file system's mtime granularity (FAT: 2 s) of the previous write. Files last written
# more than this before a full check can be polled by stat alone; the margin also absorbs
# a file server's clock running a little behind ours.
RACY_SECONDS = 3.0


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _head(path: str, start: int, length: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        return os.pread(fd, length, start)
    except OSError:
        return b""
    finally:
        os.close(fd)


def stat_stamp(db: str) -> Stamp:
    """The part of the stamp that os.stat alone gives: no file is opened."""
    return (_stat(db), _stat(db + "-wal"))


def compute_stamp(db: str) -> Stamp:
    wal = _stat(db + "-wal")
    return (
        _stat(db),
        _head(db, 24, 4),  # file change counter
        wal,
        _head(db + "-shm", 0, 48) if wal is not None else b"",  # WAL index header
    )


@dataclass(slots=True)
class Status:
    ok: bool
    kind: str  # ok | missing | locked | io | corrupt | invalid | unconfigured
    message: str
    since: float


ReloadHook = Callable[[str, float], None]


class LibraryState:
    def __init__(
        self,
        library_path: Path | None,
        busy_timeout: float = 2.0,
        retry_interval: float = 1.0,
        on_reload: ReloadHook | None = None,
    ) -> None:
        self.path = library_path
        self.db = str(library_path / "metadata.db") if library_path else ""
        self.busy_timeout = busy_timeout
        self.retry_interval = retry_interval
        self.on_reload = on_reload
        self.current: Library | None = None
        self.stamp: Stamp | None = None
        self.version = 0
        self.reloads = 0
        self.last_change_detected = 0.0
        self.changed_at = 0.0  # time.monotonic() of the last installed snapshot
        self.rereads = 0  # full re-reads done after incremental reloads
        self._quiet: Stamp | None = None  # stat_stamp proven to stand for self.stamp
        self.status = Status(False, "unconfigured", "CALIBRE_LIBRARY_PATH is not set", time.time())
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._conn_ino: int | None = None
        self._last_failure = 0.0
        self._listeners: list[Callable[[Library], None]] = []
        self._incremental_run = 0
        self._checked_at = 0.0
        self._offload_until = 0.0
        self._background: threading.Thread | None = None
        self.stalls = 0  # slow stamp checks seen (a stalling library file system)

    def add_listener(self, fn: Callable[[Library], None]) -> None:
        self._listeners.append(fn)

    # --------------------------------------------------------------- public
    def get(self) -> Library | None:
        """The current library, reloaded first if the files changed (per-request check)."""
        if not self.db:
            return None
        now = time.monotonic()
        if now - self._checked_at < CHECK_INTERVAL and self.current is not None:
            return self.current  # checked under a millisecond ago (saves syscalls under load)
        self._checked_at = now
        if now < self._offload_until:
            self._check_in_background()
            return self.current
        stamp = compute_stamp(self.db)
        if time.monotonic() - now > SLOW_CHECK:
            self._stalled()
            self._check_in_background()
            return self.current
        if stamp == self.stamp and self.current is not None:
            return self.current
        failing = self.current is None or not self.status.ok
        if failing and time.monotonic() - self._last_failure < self.retry_interval:
            return self.current  # retry at most every retry_interval; serve what we have
        self.refresh(stamp)
        return self.current

    def refresh(self, stamp: Stamp | None = None, full: bool = False) -> None:
        """Reload if the library changed (`full`: also re-read everything after incremental
        reloads). Single-flight: concurrent callers wait."""
        if not self.db:
            return
        with self._lock:
            if stamp is None or stamp != compute_stamp(self.db):
                stamp = compute_stamp(self.db)
            unchanged = stamp == self.stamp and self.current is not None and self.status.ok
            if unchanged and not (full and self._incremental_run > 0):
                return
            self._reload(stamp, full=full)

    def poll(self) -> None:
        """The watcher's periodic check, for file systems that deliver no file events (SMB,
        FUSE): os.stat only while that proves nothing changed, else refresh()."""
        if not self.db:
            return
        st = stat_stamp(self.db)
        if st == self._quiet and self.status.ok and self.current is not None:
            return
        since = time.time_ns()  # before refresh() reads the stamp
        self.refresh()
        self._quiet = st if self._stat_suffices(st, since) else None

    def _stat_suffices(self, st: Stamp, since: int) -> bool:
        """Whether `st`, unchanged, proves the library unchanged: the stamp read after
        `since` has the same stat, and every later write must move an mtime, as both
        files were last written RACY_SECONDS before `since`."""
        stamp = self.stamp
        if not self.status.ok or self.current is None or stamp is None:
            return False
        if (stamp[0], stamp[2]) != st:
            return False  # written meanwhile
        limit = since - int(RACY_SECONDS * 1e9)
        return all(f is None or (isinstance(f, tuple) and f[2] <= limit) for f in st)

    @property
    def reread_pending(self) -> bool:
        """Incremental reloads happened since the last full read."""
        return self._incremental_run > 0

    def _stalled(self) -> None:
        self.stalls += 1
        self._offload_until = time.monotonic() + OFFLOAD_SECONDS
        log.warning(
            "library file system stalled (a stamp check took over %.0f ms): serving from"
            " memory, checking in the background",
            SLOW_CHECK * 1000,
        )

    def _check_in_background(self) -> None:
        """One thread at a time re-checks (and reloads) off the request path."""
        if self._background is not None and self._background.is_alive():
            return
        self._background = threading.Thread(
            target=self._background_check, name="library-check", daemon=True
        )
        self._background.start()

    def _background_check(self) -> None:
        t0 = time.monotonic()
        stamp = compute_stamp(self.db)
        if time.monotonic() - t0 > SLOW_CHECK:
            self._stalled()  # still stalling: stay offloaded
            return
        with contextlib.suppress(Exception):  # reported through status, like inline reloads
            self.refresh(stamp)
        if self.status.ok:
            self._offload_until = 0.0  # fast and healthy again: back to inline checks

    def close(self) -> None:
        with self._lock:
            self._close_conn()

    # -------------------------------------------------------------- private
    def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None
        self._conn_ino = None

    def _connection(self, ino: int | None) -> sqlite3.Connection:
        if self._conn is not None and self._conn_ino == ino:
            return self._conn
        self._close_conn()
        self._conn = reader.connect(Path(self.db), self.busy_timeout)
        self._conn_ino = ino
        return self._conn

    def _reload(self, stamp: Stamp, full: bool = False) -> None:
        assert self.path is not None
        t0 = time.perf_counter()
        db_stat = stamp[0]
        ino = db_stat[0] if isinstance(db_stat, tuple) else None
        try:
            if db_stat is None:
                raise LibraryError("missing", f"{self.db} does not exist")
            # a fresh connection per load: no page cache that could outlive a WAL reset
            self._close_conn()
            conn = self._connection(ino)
            try:
                prev_raw = self.current.raw if self.current is not None else None
                if full:
                    prev_raw = None
                raw = reader.load_with(conn, Path(self.db), prev_raw)
            finally:
                self._close_conn()
        except LibraryError as e:
            self._fail(e)
            return
        except sqlite3.Error as e:  # pragma: no cover - classify() covers known cases
            self._fail(reader.classify(e, Path(self.db)))
            return
        previous = self.current
        if (
            previous is not None
            and raw.incremental
            and not raw.changed_ids
            and not raw.removed_ids
            and all(v == "same" for v in raw.name_state.values())
        ):
            # a write that changed nothing we serve (calibre's dirtied-book queue, ...):
            # keep the snapshot, its version and every cached response
            self.stamp = stamp
            if not self.status.ok:  # readable again after a lock or an I/O error
                self.status = Status(True, "ok", "library loaded", time.time())
            return
        if previous is not None and previous.library_id != raw.library_id:
            log.warning(
                "library replaced: library_id %s -> %s", previous.library_id, raw.library_id
            )
        lib = Library(raw, self.version + 1, str(self.path), previous)
        self._install(lib, stamp, t0)

    def _install(self, lib: Library, stamp: Stamp, t0: float) -> None:
        raw = lib.raw
        self.version = lib.version
        self._incremental_run = self._incremental_run + 1 if raw.incremental else 0
        self.current = lib
        self.stamp = stamp
        self.reloads += 1
        self.last_change_detected = time.time()
        self.changed_at = time.monotonic()
        self.status = Status(True, "ok", "library loaded", time.time())
        seconds = time.perf_counter() - t0
        log.info(
            "library loaded: %d books (%s, %d read) in %.1f ms (v%d)",
            len(lib.books),
            "incremental" if raw.incremental else "full",
            raw.changed,
            seconds * 1000,
            lib.version,
        )
        for fn in self._listeners:
            fn(lib)
        if self.on_reload:
            self.on_reload("ok", seconds)
        # the snapshot lives until the next change: keep the cyclic GC from re-scanning
        # its objects on every collection (those scans were the p99 outliers)
        gc.freeze()

    def full_reread(self) -> None:
        """Re-read everything off the request path, after incremental reloads.

        Catches writers other than calibre that change rows without bumping
        last_modified. Runs without the reload lock (requests never wait for it) and
        installs the result only if nothing changed meanwhile and it differs.
        """
        if not self.db or self.current is None or self._incremental_run == 0:
            return
        stamp = self.stamp
        t0 = time.perf_counter()
        try:
            raw = reader.load(Path(self.db).parent, self.busy_timeout)
        except LibraryError:
            return
        current = self.current
        same = (
            current is not None
            and raw.library_id == current.raw.library_id
            and raw.name_rows == current.raw.name_rows
            and raw.books == current.raw.books
        )
        lib = None if same else Library(raw, 0, str(self.path))
        self.rereads += 1
        with self._lock:
            if self.stamp != stamp or compute_stamp(self.db) != stamp:
                return  # a change arrived meanwhile; the next quiet period tries again
            if lib is None:
                self._incremental_run = 0
                return
            lib.version = self.version + 1
            log.warning("full re-read found changes the incremental reloads missed")
            self._install(lib, stamp, t0)

    def _fail(self, e: LibraryError) -> None:
        self._last_failure = time.monotonic()
        self._close_conn()
        if self.status.kind != e.kind or self.status.message != e.message:
            log.error("library unavailable (%s): %s", e.kind, e.message)
            self.status = Status(False, e.kind, e.message, time.time())
        if e.kind == "io":
            # an I/O error says nothing about the file: keep serving the last snapshot
            # (degraded) and read again after retry_interval, even if nothing changed
            self.stamp = None
        elif e.kind != "locked":
            # a missing/corrupt/replaced-by-garbage library must not be served from memory
            if self.current is not None:
                self.version += 1
            self.current = None
            self.stamp = None
        if self.on_reload:
            self.on_reload(e.kind, 0.0)
