"""A library whose file system stalls (a network mount whose server went away).

The stall is injected around the real stamp check (a stat on a dead FUSE mount blocks
for the mount's timeout; a tmpfs cannot be made to do that): requests must not wait on
it again after the first slow check, and the host's switch of the library symlink to a
replica (another real calibredb library) is picked up in the background.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from lectern_app import state as state_mod
from lectern_app.state import LibraryState


def test_a_stalled_library_is_served_from_memory_then_the_replica(
    library: Path, empty_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, replica = tmp_path / "primary", tmp_path / "replica"
    library.rename(primary)
    shutil.copytree(empty_library, replica)
    link = tmp_path / "library"
    link.symlink_to(primary)
    st = LibraryState(link)
    first = st.get()
    assert first is not None and len(first.books) > 0

    dead = threading.Event()
    real = state_mod.compute_stamp

    def stamp(db: str) -> tuple[object, ...]:
        if dead.is_set() and Path(db).resolve().is_relative_to(primary):
            time.sleep(1.0)  # the dead mount's timeout (shortened)
        return tuple(real(db))

    monkeypatch.setattr(state_mod, "compute_stamp", stamp)
    monkeypatch.setattr(state_mod, "CHECK_INTERVAL", 0.0)
    dead.set()
    t0 = time.monotonic()
    assert st.get() is first  # the one slow check: served from memory
    assert st.stalls == 1
    waits = []
    for _ in range(20):  # every later request answers at once, from memory
        t = time.monotonic()
        assert st.get() is first
        waits.append(time.monotonic() - t)
    assert max(waits) < 0.05, waits
    assert time.monotonic() - t0 < 1.6

    link.unlink()
    link.symlink_to(replica)  # the host switches to the replica
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lib = st.get()
        if lib is not None and lib is not first:
            break
        time.sleep(0.05)
    assert lib is not None and lib is not first
    assert len(lib.books) == 0 and st.status.ok  # the (empty) replica is what serves now


def test_an_io_error_serves_the_last_snapshot_and_is_retried(
    library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO from a vanished network mount is not corruption: the last snapshot keeps being
    served (degraded, kind io) and the library is read again without waiting for a change."""
    st = LibraryState(library, retry_interval=0.0)
    first = st.get()
    assert first is not None and len(first.books) > 0
    real = state_mod.reader.load_with
    failing = threading.Event()

    def load_with(*args: object, **kwargs: object) -> object:
        if failing.is_set():
            raise sqlite3.OperationalError("disk I/O error")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(state_mod.reader, "load_with", load_with)
    monkeypatch.setattr(state_mod, "CHECK_INTERVAL", 0.0)
    failing.set()
    db = library / "metadata.db"
    os.utime(db, (db.stat().st_atime, db.stat().st_mtime + 5))  # a change to read
    assert st.get() is first  # the read fails: still served
    assert not st.status.ok and st.status.kind == "io"
    failing.clear()
    lib = st.get()  # re-read although metadata.db did not change
    assert st.status.ok and lib is not None and len(lib.books) == len(first.books)
