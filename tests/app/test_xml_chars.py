"""Characters XML forbids (and HTML calls parse errors) in metadata and in requests never
reach an OPDS feed, a web page or a download name.

The library is made by calibredb; `calibredb set_metadata` stores control characters in
titles, series, publishers, comments and identifiers verbatim. It turns some of them
into spaces in author names and tags, so the author name, the tag and a file name are
written into metadata.db with sqlite3 afterwards, as any other program writing the
library can.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

import pytest
from fastapi.testclient import TestClient
from lectern_app import xmltext
from lectern_app.demo import run_calibredb
from lectern_app.main import create_app

from .accounts_support import bearer, login, make_app
from .conftest import make_settings

__all__ = ["make_app"]

ATOM = "{http://www.w3.org/2005/Atom}"
# C0 controls, DEL and C1, a noncharacter of the BMP and of plane 1, U+FFFE/U+FFFF
DIRTY = "\x01\x0b\x0c\x1f\x7f\x85\x9f\ufdd0\ufffe\uffff\U0001fffe"
# what XML 1.0 forbids: one of these anywhere and a feed cannot be parsed
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# what HTML calls parse errors: controls other than whitespace, surrogates, noncharacters
HTML_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff\U0001fffe\U0001ffff]"
)


def dirty(word: str) -> str:
    return word[:2] + DIRTY + word[2:]


TITLE, AUTHOR, TAG, SERIES, PUBLISHER = (
    dirty(w) for w in ("Dirty Title", "Dirty Author", "Dirty Tag", "Dirty Series", "Dirty Pub")
)
COMMENT, IDENT, FILE = dirty("Dirty comment"), dirty("9780000000019"), dirty("Dirty file")
# inputs echoed back: search terms, filters, a sign-in page's target
ECHOED = ["\x01", "\x0b", "\x7f", "\ufffe", "x\x1fy\U0001fffe", TITLE]


@dataclass
class Dirty:
    client: TestClient
    book: int
    author: int
    tag: int
    series: int
    publisher: int


@pytest.fixture(scope="module")
def dirty_library(
    built_library: tuple[Path, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    lib = tmp_path_factory.mktemp("dirty") / "library"
    shutil.copytree(built_library[0], lib)
    with closing(sqlite3.connect(lib / "metadata.db")) as con:
        (book,) = con.execute("SELECT id FROM books WHERE title = 'Xylophone Lessons'").fetchone()
    run_calibredb(
        lib,
        "set_metadata",
        str(book),
        "--field",
        f"title:{TITLE}",
        "--field",
        "tags:Dirty tag,Plain",
        "--field",
        f"series:{SERIES}",
        "--field",
        f"publisher:{PUBLISHER}",
        "--field",
        f"comments:<p>{COMMENT}</p>",
        "--field",
        f"identifiers:isbn:{IDENT}",
    )
    with closing(sqlite3.connect(lib / "metadata.db")) as con, con:
        con.execute(
            "UPDATE authors SET name = ? WHERE id IN"
            " (SELECT author FROM books_authors_link WHERE book = ?)",
            (AUTHOR, book),
        )
        con.execute("UPDATE tags SET name = ? WHERE name = 'Dirty tag'", (TAG,))
        path, name = con.execute(
            "SELECT b.path, d.name FROM books b JOIN data d ON d.book = b.id"
            " WHERE b.id = ? AND d.format = 'EPUB'",
            (book,),
        ).fetchone()
        con.execute("UPDATE data SET name = ? WHERE book = ? AND format = 'EPUB'", (FILE, book))
        (lib / path / f"{name}.epub").rename(lib / path / f"{FILE}.epub")
        stored = con.execute(
            "SELECT b.title, group_concat(DISTINCT t.name), s.name, p.name, c.text, i.val"
            " FROM books b JOIN books_tags_link bt ON bt.book = b.id JOIN tags t ON t.id = bt.tag"
            " JOIN books_series_link bs ON bs.book = b.id JOIN series s ON s.id = bs.series"
            " JOIN books_publishers_link bp ON bp.book = b.id"
            " JOIN publishers p ON p.id = bp.publisher"
            " JOIN comments c ON c.book = b.id JOIN identifiers i ON i.book = b.id"
            " WHERE b.id = ?",
            (book,),
        ).fetchone()
    # the library really holds them: calibredb kept every character
    assert stored[0] == TITLE
    assert TAG in stored[1].split(",")
    assert stored[2:] == (SERIES, PUBLISHER, f"<p>{COMMENT}</p>", IDENT)
    return lib


@pytest.fixture(scope="module")
def lib(dirty_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dirty]:
    app = create_app(make_settings(dirty_library, tmp_path_factory.mktemp("data")))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield Dirty(c, **_ids(c))


def _ids(c: TestClient) -> dict[str, int]:
    (book,) = [b for b in c.get("/api/books?per_page=200").json()["items"] if b["title"] == TITLE]
    b = c.get(f"/api/books/{book['id']}").json()
    (author,) = b["author_ids"]
    (tag,) = [t["id"] for t in c.get("/api/tags?per_page=500").json()["items"] if t["name"] == TAG]
    return {
        "book": b["id"],
        "author": author,
        "tag": tag,
        "series": b["series_id"],
        "publisher": b["publisher_id"],
    }


def clean(text: str) -> str:
    """What the pages must show: the text without every character of DIRTY."""
    return "".join(ch for ch in text if ch not in DIRTY)


def _feed(c: TestClient, url: str) -> ET.Element:
    r = c.get(url)
    assert r.status_code == 200, (url, r.text[:300])
    assert not XML_FORBIDDEN.search(r.text), url
    return ET.fromstring(r.content)  # expat: refuses what XML 1.0 forbids


def test_every_opds_feed_parses(lib: Dirty) -> None:
    """Every feed reachable from the root (navigation, paging, every category's books),
    as a strict XML parser sees it, with the dirty book's metadata cleaned, not dropped."""
    seen: set[str] = set()
    todo = ["/opds/"]
    entries: list[ET.Element] = []
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        feed = _feed(lib.client, url)
        entries += feed.findall(f"{ATOM}entry")
        for link in feed.iter(f"{ATOM}link"):
            href = str(link.get("href"))
            if href.startswith("/opds/") and "atom+xml" in str(link.get("type")):
                todo.append(href)
    for kind, cid in (
        ("authors", lib.author),
        ("tags", lib.tag),
        ("series", lib.series),
        ("publishers", lib.publisher),
    ):
        assert f"/opds/{kind}/{cid}" in seen
    assert len(seen) > 20
    nav_titles = {e.findtext(f"{ATOM}title") for e in entries}
    assert {clean(AUTHOR), clean(TAG), clean(SERIES), clean(PUBLISHER)} <= nav_titles
    mine = [e for e in entries if e.findtext(f"{ATOM}title") == clean(TITLE)]
    assert mine
    e = mine[0]
    assert [a.findtext(f"{ATOM}name") for a in e.findall(f"{ATOM}author")] == [clean(AUTHOR)]
    assert clean(TAG) in [c.get("label") for c in e.findall(f"{ATOM}category")]
    assert clean(SERIES) in str(e.findtext(f"{ATOM}summary"))
    assert clean(PUBLISHER) == e.findtext("{http://purl.org/dc/terms/}publisher")
    assert clean(COMMENT) in str(e.findtext(f"{ATOM}content"))
    assert f"urn:isbn:{clean(IDENT)}" in [
        i.text for i in e.findall("{http://purl.org/dc/terms/}identifier")
    ]
    _feed(lib.client, "/opds/opensearch.xml")


@pytest.mark.parametrize("q", ECHOED)
def test_opds_search_echo_parses(lib: Dirty, q: str) -> None:
    feed = _feed(lib.client, "/opds/search?q=" + "".join(f"%{b:02X}" for b in q.encode()))
    assert feed.findtext(f"{ATOM}title") == f"Search: {clean(q)}"
    titles = [e.findtext(f"{ATOM}title") for e in feed.findall(f"{ATOM}entry")]
    if q == TITLE:
        assert titles == [clean(TITLE)]


def _page(c: TestClient, url: str, params: dict[str, Any] | None = None, **kw: Any) -> str:
    r = c.get(url, params=params, **kw)
    assert r.status_code in (200, 404), (url, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html"), url
    text: str = r.text
    found = HTML_FORBIDDEN.search(text)
    assert found is None, f"{url} {params}: {found.group()!r} in the page"
    return text


def test_web_pages_for_the_book_and_its_categories(lib: Dirty) -> None:
    c = lib.client
    page = _page(c, f"/book/{lib.book}")
    for text in (TITLE, AUTHOR, TAG, SERIES, PUBLISHER, IDENT):
        assert clean(text) in page
    assert "rty comment" in page  # striptags made spaces of the whitespace among DIRTY
    for url in (
        f"/?author_id={lib.author}",
        f"/?tag_id={lib.tag}",
        f"/?series_id={lib.series}",
        f"/?publisher_id={lib.publisher}",
        "/?sort=title&per_page=200",
    ):
        assert clean(TITLE) in _page(c, url)
    for kind, name in (
        ("authors", AUTHOR),
        ("tags", TAG),
        ("series", SERIES),
        ("publishers", PUBLISHER),
    ):
        assert clean(name) in _page(c, f"/{kind}", {"per_page": 200})
    for param, name in (("author", AUTHOR), ("tag", TAG), ("series", SERIES)):
        assert clean(TITLE) in _page(c, "/", {param: name})  # the heading echoes the name
    _page(c, "/languages")
    _page(c, "/book/999999", headers={"accept": "text/html"})


@pytest.mark.parametrize("q", ECHOED)
def test_web_pages_echoing_input(lib: Dirty, q: str) -> None:
    c = lib.client
    _page(c, "/search", {"q": q})
    _page(c, "/", {"q": q, "sort": "title"})
    _page(c, "/", {"author": q})
    for kind in ("authors", "tags", "series", "publishers", "languages"):
        _page(c, f"/{kind}", {"q": q})
    _page(c, "/login", {"next": "/" + q})


def test_personal_pages(make_app: Any, dirty_library: Path, tmp_path: Path) -> None:
    """The signed-in pages (webui) show book titles and the user's own list names."""
    c = make_app(dirty_library, f"sqlite:///{tmp_path / 'a.db'}")
    auth = bearer(login(c)["access_token"])
    book = _ids(c)["book"]
    assert c.put(f"/api/user/favorites/{book}", headers=auth).status_code == 204
    r = c.post("/api/user/lists", json={"name": "List" + DIRTY}, headers=auth)
    assert r.status_code == 201, r.text
    list_id = r.json()["id"]
    r = c.post(f"/api/user/lists/{list_id}/books", json={"book_id": book}, headers=auth)
    assert r.status_code == 204, r.text
    me = _page(c, "/me", headers=auth)
    assert clean(TITLE) in me
    assert "List" + clean(DIRTY) in me
    assert clean(TITLE) in _page(c, f"/me/lists/{list_id}", headers=auth)


def test_download_name_has_no_control_characters(lib: Dirty) -> None:
    r = lib.client.get(f"/api/files/download/{lib.book}/epub")
    assert r.status_code == 200
    disposition = r.headers["content-disposition"]
    name = unquote(disposition.split("''", 1)[-1]) if "''" in disposition else disposition
    assert not re.search("[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]", name), disposition
    assert clean(FILE) + ".epub" in name


def test_clean_leaves_only_what_xml_allows() -> None:
    """Over every code point (lone surrogates too, which no library can hold but a JSON
    request body can): the result parses as XML and keeps all ordinary text."""
    every = "".join(chr(i) for i in range(0x110000))
    kept = xmltext.clean(every)
    ET.fromstring(f"<t>{escape(kept)}</t>".encode())
    assert not HTML_FORBIDDEN.search(kept.replace("\x0c", ""))
    assert "\t\n\r" in kept and "\x0c" not in kept
    assert len(every) - len(kept) == 29 + 33 + 2048 + 32 + 2 * 17
    assert xmltext.clean_filename("a\tb\nc\r\x01.epub") == "abc.epub"


def test_text_that_is_not_utf8_costs_one_character_not_the_library(
    built_library: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A comment holding bytes that are not UTF-8 (written by another program): the
    library still loads, the other books are untouched, the bad bytes show as U+FFFD."""
    lib = tmp_path / "library"
    shutil.copytree(built_library[0], lib)
    with closing(sqlite3.connect(lib / "metadata.db")) as con, con:
        (book,) = con.execute("SELECT id FROM books WHERE title = 'Xylophone Lessons'").fetchone()
        bad = "CAST(X'3C703E4F6B20FF20C32E3C2F703E' AS TEXT)"  # <p>Ok \xff \xc3.</p>
        con.execute(f"UPDATE comments SET text = {bad} WHERE book = ?", (book,))
    app = create_app(make_settings(lib, tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/api/health").status_code == 200
        books = c.get("/api/books", params={"per_page": 200}).json()
        assert books["total"] == len(built_library[1])
        comments = c.get(f"/api/books/{book}").json()["comments"]
        assert comments == "<p>Ok \ufffd \ufffd.</p>"
        feed = c.get("/opds/search", params={"q": "Xylophone"})
        assert feed.status_code == 200
        ET.fromstring(feed.content)  # and the feeds still parse
