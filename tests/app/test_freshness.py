"""Changes made by calibredb are visible as soon as calibredb exits; faults are reported."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from lectern_app.demo import run_calibredb

from .conftest import new_epub


def _total(c: Any) -> int:
    total: int = c.get("/api/books").json()["total"]
    return total


def test_add_edit_remove_visible_right_after_calibredb_exits(
    library: Path, client_for: Any, tmp_path: Path
) -> None:
    c = client_for(library)  # watcher off: the per-request check alone must be enough
    before = _total(c)
    c.get("/api/books", params={"q": "quetzalcoatl"})  # cache a miss for this query
    out = run_calibredb(library, "add", str(new_epub(tmp_path, "Quetzalcoatl Rising")))
    assert _total(c) == before + 1  # no sleep: the very next request sees it
    hits = c.get("/api/books", params={"q": "quetzalcoatl"}).json()["items"]
    assert [h["title"] for h in hits] == ["Quetzalcoatl Rising"]
    new_id = hits[0]["id"]
    assert str(new_id) in out

    run_calibredb(library, "set_metadata", str(new_id), "--field", "title:Quetzalcóatl Falling")
    assert c.get(f"/api/books/{new_id}").json()["title"] == "Quetzalcóatl Falling"

    run_calibredb(library, "remove", str(new_id))
    assert c.get(f"/api/books/{new_id}").status_code == 404
    assert _total(c) == before


def test_wal_mode_library(library: Path, client_for: Any, tmp_path: Path) -> None:
    conn = sqlite3.connect(library / "metadata.db")
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.close()
    c = client_for(library)
    before = _total(c)
    run_calibredb(library, "add", str(new_epub(tmp_path, "Written Ahead")))
    assert _total(c) == before + 1
    run_calibredb(library, "set_metadata", "2", "--field", "tags:walmode")
    assert c.get("/api/books", params={"tag": "walmode"}).json()["total"] == 1
    conn = sqlite3.connect(f"file:{library / 'metadata.db'}?mode=ro", uri=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # calibre kept WAL
    conn.close()


def test_watcher_reloads_without_any_request(
    library: Path, client_for: Any, tmp_path: Path
) -> None:
    c = client_for(library, watch=True)
    state = c.app.state.services.state
    v0 = state.version
    run_calibredb(library, "add", str(new_epub(tmp_path, "Watched Pot")))
    deadline = time.monotonic() + 3
    while state.version == v0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.version > v0
    assert any(b.title == "Watched Pot" for b in state.current.books.values())


def test_missing_then_restored_library(library: Path, client_for: Any) -> None:
    c = client_for(library)
    assert c.get("/api/health").status_code == 200
    moved = library.with_name("moved")
    library.rename(moved)
    r = c.get("/api/books")
    assert r.status_code == 503
    assert r.json()["detail"]["reason"] == "missing"
    h = c.get("/api/health")
    assert h.status_code == 503
    body = h.json()
    assert body["status"] == "unhealthy"
    assert body["calibre"] is False
    assert body["library"]["error"]["kind"] == "missing"
    moved.rename(library)
    time.sleep(1.1)  # failures are retried at most once a second
    assert c.get("/api/health").json()["status"] == "healthy"
    assert c.get("/api/books").status_code == 200


def test_corrupt_library_is_reported(library: Path, client_for: Any) -> None:
    c = client_for(library)
    (library / "metadata.db").write_bytes(b"this is not a database" * 100)
    h = c.get("/api/health")
    assert h.status_code == 503
    assert h.json()["library"]["error"]["kind"] in ("corrupt", "invalid")
    r = c.get("/opds/")
    assert r.status_code == 503
    assert "Traceback" not in r.text


def test_not_a_calibre_library(tmp_path: Path, client_for: Any) -> None:
    lib = tmp_path / "notcalibre"
    lib.mkdir()
    sqlite3.connect(lib / "metadata.db").execute("CREATE TABLE x (a)").connection.commit()
    h = client_for(lib).get("/api/health")
    assert h.status_code == 503
    assert h.json()["library"]["error"]["kind"] == "invalid"


def test_unconfigured(client_for: Any) -> None:
    c = client_for(None)
    h = c.get("/api/health")
    assert h.status_code == 503
    assert c.get("/api/books").status_code == 503


def test_replaced_library_is_noticed(library: Path, empty_library: Path, client_for: Any) -> None:
    c = client_for(library)
    old_id = c.get("/api/health").json()["library"]["library_id"]
    shutil.copy(empty_library / "metadata.db", library / "metadata.db.new")
    (library / "metadata.db.new").replace(library / "metadata.db")  # atomic swap
    body = c.get("/api/health").json()
    assert body["library"]["library_id"] != old_id
    assert body["books"] == 0
    assert _total(c) == 0


def test_locked_library_serves_last_snapshot_and_says_so(library: Path, client_for: Any) -> None:
    c = client_for(library)
    before = _total(c)
    writer = sqlite3.connect(library / "metadata.db", isolation_level=None, timeout=5)
    writer.create_function("title_sort", 1, lambda t: t)  # calibre's triggers call it
    # a committed change, made the way calibre makes it (last_modified bumped)...
    writer.execute(
        "UPDATE books SET title = 'Changed', last_modified = '2031-01-01 00:00:00.000001+00:00'"
        " WHERE id = 1"
    )
    writer.execute("BEGIN EXCLUSIVE")  # ...then a writer holds the lock
    try:
        r = c.get("/api/books")
        assert r.status_code == 200
        assert r.json()["total"] == before
        h = c.get("/api/health")
        assert h.status_code == 200
        assert h.json()["status"] == "degraded"
        assert h.json()["library"]["error"]["kind"] == "locked"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    time.sleep(1.1)
    assert c.get("/api/books/1").json()["title"] == "Changed"
    assert c.get("/api/health").json()["status"] == "healthy"


def _signature(lib: Any) -> Any:
    from dataclasses import asdict

    books = {i: asdict(b) for i, b in sorted(lib.books.items())}
    cats = {
        kind: sorted((c.id, c.name, sorted(c.book_ids)) for c in cs.values())
        for kind, cs in lib.categories.items()
    }
    orders = {k: lib.order(k, False) for k in ("added", "title", "author", "series", "rating")}
    return books, cats, orders, lib.search("a")


def test_incremental_reload_equals_a_full_read(
    library: Path, client_for: Any, tmp_path: Path
) -> None:
    from lectern_app import reader
    from lectern_app.library import Library

    c = client_for(library)
    state = c.app.state.services.state
    c.get("/api/books")
    run_calibredb(library, "add", str(new_epub(tmp_path, "Incremental One", tags=["Inc"])))
    run_calibredb(
        library,
        "set_metadata",
        "3",
        "--field",
        "authors:Renamed Person & Al First",
        "--field",
        "series:Brand New Series",
        "--field",
        "title:Aardvark First",
    )
    run_calibredb(library, "remove", "4")
    c.get("/api/books")
    lib = state.current
    assert lib.raw.incremental
    full = Library(reader.load(library), 0, str(library))
    assert _signature(lib) == _signature(full)
    assert c.get("/api/books/3").json()["title"] == "Aardvark First"
    assert c.get("/api/books/4").status_code == 404
    # names stable this time: indexes are patched, not rebuilt
    run_calibredb(
        library,
        "set_metadata",
        "5",
        "--field",
        "tags:Fiction",
        "--field",
        "title:Xylophone Reprise",
    )
    run_calibredb(library, "add", str(new_epub(tmp_path, "Second Wave", authors=["Amy First"])))
    c.get("/api/books")
    lib = state.current
    assert lib.raw.incremental and lib.raw.names_unchanged
    assert _signature(lib) == _signature(Library(reader.load(library), 0, str(library)))
    titles = [i["title"] for i in c.get("/api/books", params={"q": "xylophone"}).json()["items"]]
    assert titles.count("Xylophone Reprise") == 1
    assert "Xylophone Lessons" not in titles


def test_full_reread_catches_writers_that_do_not_bump_last_modified(
    library: Path, client_for: Any, tmp_path: Path
) -> None:
    c = client_for(library)
    state = c.app.state.services.state
    run_calibredb(library, "set_metadata", "2", "--field", "tags:first")
    assert c.get("/api/books", params={"tag": "first"}).json()["total"] == 1  # incremental
    writer = sqlite3.connect(library / "metadata.db", isolation_level=None)
    writer.create_function("title_sort", 1, lambda t: t)
    writer.execute("UPDATE books SET title = 'Sneaky' WHERE id = 5")  # last_modified kept
    writer.close()
    c.get("/api/books")  # stamp changed: incremental reload cannot see this row
    assert c.get("/api/books/5").json()["title"] != "Sneaky"
    state.full_reread()  # what the watcher does after a quiet period
    assert c.get("/api/books/5").json()["title"] == "Sneaky"


def test_category_rename_is_seen_without_book_changes(library: Path, client_for: Any) -> None:
    """A rename (here of the newest author, by appending) touches no book row."""
    c = client_for(library)
    c.get("/api/books")
    writer = sqlite3.connect(library / "metadata.db", isolation_level=None)
    last_id, name = writer.execute("SELECT id, name FROM authors ORDER BY id DESC").fetchone()
    writer.execute("UPDATE authors SET name = ? WHERE id = ?", (name + " Jr", last_id))
    writer.close()
    names = [a["name"] for a in c.get("/api/authors", params={"per_page": 1000}).json()["items"]]
    assert name + " Jr" in names
    assert name not in names
    state = c.app.state.services.state
    assert state.current.raw.name_state["authors"] == "changed"
