"""A library whose file system stalls (a network mount whose server went away).

The stall is injected around the real stamp check (a stat on a dead FUSE mount blocks
for the mount's timeout; a tmpfs cannot be made to do that): requests must not wait on
it again after the first slow check, and the host's switch of the library symlink to a
replica (another real calibredb library) is picked up in the background.
"""

from __future__ import annotations

import shutil
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
