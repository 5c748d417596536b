"""calibredb add/set_metadata/remove while a real server is under read load."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lectern_app.demo import run_calibredb

from .conftest import new_epub


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(library: Path, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        CALIBRE_LIBRARY_PATH=str(library),
        DATA_DIR=str(tmp_path / "data"),
        HOST="127.0.0.1",
        PORT=str(port),
        WATCH_CALIBRE_DB="true",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "lectern_app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90  # start includes the accounts DB; loaded CI boxes
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:  # pragma: no cover
        proc.kill()
        raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "no server")
    yield base
    proc.terminate()
    _out, err = proc.communicate(timeout=10)
    assert b"Traceback" not in err, err.decode()


def test_calibredb_writes_under_read_load(server: str, library: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    urls = [
        "/api/books?per_page=30",
        "/api/books?q=storm",
        "/api/authors",
        "/api/books/1",
        "/api/books?sort=title&page=2&per_page=5",
        "/api/tags",
        "/opds/",
        "/",
    ]

    def reader(offset: int) -> None:
        with httpx.Client(base_url=server, timeout=10) as c:
            i = offset
            while not stop.is_set():
                r = c.get(urls[i % len(urls)])
                i += 1
                with lock:
                    statuses[r.status_code] += 1

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=server, timeout=10) as c:
            before = c.get("/api/books").json()["total"]
            files = [str(new_epub(tmp_path, f"Concurrent Arrival {k}")) for k in range(3)]
            run_calibredb(library, "add", *files)  # raises if calibredb fails
            body = c.get("/api/books", params={"q": "concurrent arrival"}).json()
            assert body["total"] == 3
            assert c.get("/api/books").json()["total"] == before + 3
            ids = sorted(i["id"] for i in body["items"])

            run_calibredb(
                library, "set_metadata", str(ids[0]), "--field", "title:Renamed Under Load"
            )
            assert c.get(f"/api/books/{ids[0]}").json()["title"] == "Renamed Under Load"
            run_calibredb(library, "set_metadata", str(ids[1]), "--field", "authors:Nova Writer")
            authors = c.get("/api/authors", params={"q": "nova", "per_page": 10}).json()
            assert [a["name"] for a in authors["items"]] == ["Nova Writer"]

            run_calibredb(library, "remove", str(ids[2]))
            assert c.get(f"/api/books/{ids[2]}").status_code == 404
            assert c.get("/api/books").json()["total"] == before + 2
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sum(statuses.values()) > 50
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {200}, statuses
