"""Idle means idle: with no request and no change the app does not open metadata.db.

A real uvicorn server (in a thread, so the test can read the library state) serves a
calibredb-made library with its watcher on; a second inotify watch counts every open of
metadata.db by anyone, the way the defect was found.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from lectern_app import state as state_module
from lectern_app import watcher
from lectern_app.demo import run_calibredb
from lectern_app.main import create_app
from lectern_app.state import LibraryState
from watchdog.events import FileOpenedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver

from .conftest import make_settings

# the watcher's periods, shortened for the test (the same code paths, sooner)
QUIET = 3.0  # quiet before its full re-read
POLL = 0.5  # its fallback poll
RACY = 1.0  # how old a write must be before a poll trusts os.stat alone
# long enough for the watcher's polls to trust os.stat (the files were written RACY
# seconds before a full check), with a poll period of slack
SETTLE = RACY + 2 * POLL + 1.0
WINDOW = 3.0  # the idle stretch measured (the old watcher opened the db ~270 times in it)


def _eventually(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)


class _Opens(FileSystemEventHandler):
    """Counts opens of metadata.db (inotify IN_OPEN), by any process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def on_opened(self, event: FileSystemEvent) -> None:
        if Path(str(event.src_path)).name == "metadata.db":
            with self._lock:
                self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


@pytest.fixture
def live(
    library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, LibraryState]]:
    monkeypatch.setattr(watcher, "QUIET_FULL_REREAD", QUIET)
    monkeypatch.setattr(watcher, "POLL_SECONDS", POLL)
    monkeypatch.setattr(state_module, "RACY_SECONDS", RACY)
    app = create_app(make_settings(library, tmp_path / "data", watch=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    _eventually(lambda: server.started, timeout=60)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}", app.state.services.state
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def opens(library: Path) -> Iterator[_Opens]:
    counter = _Opens()
    obs = InotifyObserver()
    obs.schedule(counter, str(library), recursive=False, event_filter=[FileOpenedEvent])
    obs.start()
    try:
        yield counter
    finally:
        obs.stop()
        obs.join(timeout=5)


def test_idle_app_does_not_open_the_library(
    live: tuple[str, LibraryState], opens: _Opens, library: Path
) -> None:
    base, state = live
    # the instrument works: a request's freshness check opens metadata.db once
    assert httpx.get(base + "/api/books", timeout=10).status_code == 200
    _eventually(lambda: opens.count > 0, timeout=5)
    assert opens.count > 0

    time.sleep(SETTLE)
    seen, reloads, version = opens.count, state.reloads, state.version
    time.sleep(WINDOW)
    assert opens.count - seen == 0, f"{opens.count - seen} opens of metadata.db while idle"
    assert (state.reloads, state.version) == (reloads, version)

    # a change is still picked up without any request: the watcher reloads...
    rereads = state.rereads
    run_calibredb(library, "set_metadata", "5", "--field", "title:Idle No More")
    _eventually(
        lambda: state.current is not None and state.current.books[5].title == "Idle No More",
        timeout=3,
    )
    assert state.current is not None
    assert state.current.books[5].title == "Idle No More"
    assert state.reloads > reloads
    # ...then, the burst over, re-reads everything (changes the quick checks miss)...
    _eventually(lambda: not state.reread_pending, timeout=QUIET + 2 * POLL + 5)
    assert not state.reread_pending
    assert state.rereads > rereads
    rereads = state.rereads

    # ...and rests again
    time.sleep(SETTLE)
    seen, reloads, version = opens.count, state.reloads, state.version
    time.sleep(WINDOW)
    assert opens.count - seen == 0, f"{opens.count - seen} opens of metadata.db while idle"
    assert (state.reloads, state.version, state.rereads) == (reloads, version, rereads)
    assert httpx.get(base + "/api/books/5", timeout=10).json()["title"] == "Idle No More"
