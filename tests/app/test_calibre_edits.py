"""Every kind of edit calibre makes shows in the API within the freshness target.

Each test edits a calibredb-made library with calibre itself (calibredb, or calibre's
database API where calibre desktop has an edit calibredb lacks) while the app runs with
its watcher, then polls the API for a bounded time and asserts the final state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lectern_app import reader
from lectern_app.demo import make_cover_jpeg, run_calibredb

from .calibre_api import rename_items
from .conftest import new_epub

FRESH = 3.0  # seconds: far above the watcher's debounce, far below the quiet re-read


def _eventually(check: Callable[[], bool], timeout: float = FRESH) -> None:
    """Poll until check() holds or the time is up; the caller asserts the final state."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)


def _book(c: Any, book_id: int) -> dict[str, Any]:
    body: dict[str, Any] = c.get(f"/api/books/{book_id}").json()
    return body


def _authors(c: Any) -> dict[str, int]:
    items = c.get("/api/authors", params={"per_page": 1000}).json()["items"]
    return {a["name"]: a["count"] for a in items}


def _tags(c: Any) -> dict[str, int]:
    items = c.get("/api/tags", params={"per_page": 1000}).json()["items"]
    return {t["name"]: t["count"] for t in items}


def _added_id(out: str) -> int:
    return int(out.rsplit(":", 1)[1].split(",")[0].strip())


def _add(library: Path, tmp_path: Path, title: str, **kw: Any) -> int:
    return _added_id(run_calibredb(library, "add", str(new_epub(tmp_path, title, **kw))))


@pytest.mark.parametrize("incremental_max", [reader.INCREMENTAL_MAX, 0], ids=["changed", "all"])
def test_author_renamed_in_letter_case_only(
    library: Path,
    client_for: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    incremental_max: int,
) -> None:
    """Same length, same first, middle and last letters: only the case of one letter moves.
    `all`: the reload reads every book again (as it does past INCREMENTAL_MAX changes)."""
    monkeypatch.setattr(reader, "INCREMENTAL_MAX", incremental_max)
    c = client_for(library, watch=True)
    book = _add(library, tmp_path, "Thérèse Raquin", authors=["Émile Zola"])
    assert _book(c, book)["authors"] == ["Émile Zola"]
    author_id = _book(c, book)["author_ids"][0]

    rename_items(library, "authors", {author_id: "Émile zola"})

    _eventually(lambda: _book(c, book)["authors"] == ["Émile zola"])
    assert _book(c, book)["authors"] == ["Émile zola"]
    names = _authors(c)
    assert "Émile zola" in names
    assert "Émile Zola" not in names
    by_name = c.get("/api/books", params={"author": "Émile zola"}).json()["items"]
    assert [h["id"] for h in by_name] == [book]
    assert _book(c, book)["author_ids"] == [author_id]  # renamed in place, not replaced


def test_two_authors_merged(library: Path, client_for: Any, tmp_path: Path) -> None:
    c = client_for(library, watch=True)
    accented = _add(library, tmp_path, "Germinal", authors=["Émile Zola"])
    plain = _add(library, tmp_path, "Nana", authors=["Emile Zola"])
    assert _book(c, plain)["authors"] == ["Emile Zola"]
    plain_author = _book(c, plain)["author_ids"][0]

    rename_items(library, "authors", {plain_author: "Émile Zola"})  # an existing name: merge

    _eventually(lambda: "Emile Zola" not in _authors(c))
    names = _authors(c)
    assert "Emile Zola" not in names
    assert names["Émile Zola"] == 2
    assert _book(c, plain)["authors"] == ["Émile Zola"]
    assert _book(c, plain)["author_ids"] == _book(c, accented)["author_ids"]
    assert c.get("/api/books", params={"author_id": plain_author}).json()["total"] == 0


def test_tags_renamed(library: Path, client_for: Any) -> None:
    c = client_for(library, watch=True)
    run_calibredb(library, "set_metadata", "2", "--field", "tags:Science Fiction,Music")
    before = _tags(c)
    assert before["Science Fiction"] == 1
    ids = {t: i for i, t in zip(_book(c, 2)["tag_ids"], _book(c, 2)["tags"], strict=True)}

    rename_items(library, "tags", {ids["Science Fiction"]: "Science fiction"})  # case only
    _eventually(lambda: "Science fiction" in _tags(c))
    tags = _tags(c)
    assert "Science Fiction" not in tags and tags["Science fiction"] == 1
    assert "Science fiction" in _book(c, 2)["tags"]

    rename_items(library, "tags", {ids["Music"]: "Muzak"})
    _eventually(lambda: "Muzak" in _tags(c))
    tags = _tags(c)
    assert "Music" not in tags and tags["Muzak"] == before["Music"]
    assert sorted(_book(c, 2)["tags"]) == ["Muzak", "Science fiction"]
    assert c.get("/api/books", params={"tag": "Muzak"}).json()["total"] == before["Music"]


def test_series_index_changed(library: Path, client_for: Any) -> None:
    c = client_for(library, watch=True)
    assert _book(c, 4)["series_index"] == 2.75
    run_calibredb(library, "set_metadata", "4", "--field", "series_index:0.5")
    _eventually(lambda: _book(c, 4)["series_index"] == 0.5)
    assert _book(c, 4)["series_index"] == 0.5
    series = _book(c, 4)["series"]
    in_order = c.get("/api/books", params={"series": series, "sort": "series"}).json()["items"]
    assert [b["id"] for b in in_order] == [3, 4, 1]  # 0.25, 0.5, 1.5


def test_custom_column_values(library: Path, client_for: Any) -> None:
    c = client_for(library, watch=True)

    def custom(book_id: int) -> dict[str, Any]:
        cols: dict[str, Any] = _book(c, book_id)["custom_columns"]
        return {label: v["value"] for label, v in cols.items()}

    assert custom(4)["pages"] == 12
    run_calibredb(library, "set_custom", "pages", "4", "99")
    _eventually(lambda: custom(4).get("pages") == 99)
    assert custom(4)["pages"] == 99

    run_calibredb(library, "add_custom_column", "shelf", "Shelf", "text")
    run_calibredb(library, "set_custom", "shelf", "3", "Top shelf")
    _eventually(lambda: custom(3).get("shelf") == "Top shelf")
    assert custom(3)["shelf"] == "Top shelf"
    assert _book(c, 3)["custom_columns"]["shelf"]["name"] == "Shelf"


def test_cover_replaced(library: Path, client_for: Any, tmp_path: Path) -> None:
    c = client_for(library, watch=True)
    before = _book(c, 1)
    old_cover = c.get(before["cover_url"]).content
    old_thumb = c.get(before["thumbnail_url"]).content
    new = tmp_path / "new-cover.jpg"
    new.write_bytes(make_cover_jpeg("A new cover", (200, 40, 40)))

    run_calibredb(library, "set_metadata", "1", "--field", f"cover:{new}")

    on_disk = (library / before["path"] / "cover.jpg").read_bytes()
    assert on_disk != old_cover
    _eventually(lambda: c.get("/api/files/cover/1").content == on_disk)
    after = _book(c, 1)
    assert after["cover_url"] != before["cover_url"]
    assert c.get("/api/files/cover/1").content == on_disk
    assert c.get(after["cover_url"]).content == on_disk
    assert c.get(after["thumbnail_url"]).content != old_thumb


def test_format_added_and_removed(library: Path, client_for: Any, tmp_path: Path) -> None:
    c = client_for(library, watch=True)

    def formats(book_id: int) -> list[str]:
        return [f["format"] for f in _book(c, book_id)["formats"]]

    assert "RTF" not in formats(2)
    rtf = tmp_path / "extra.rtf"
    rtf.write_text("{\\rtf1\\ansi A rich text edition.}")
    run_calibredb(library, "add_format", "2", str(rtf))
    _eventually(lambda: "RTF" in formats(2))
    assert "RTF" in formats(2)
    r = c.get("/api/files/download/2/rtf")
    assert r.status_code == 200
    assert r.content == rtf.read_bytes()

    run_calibredb(library, "remove_format", "2", "RTF")
    _eventually(lambda: "RTF" not in formats(2))
    assert "RTF" not in formats(2)
    assert c.get("/api/files/download/2/rtf").status_code == 404
