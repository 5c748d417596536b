"""OPDS 1.2 feeds, the web UI, downloads/covers, metrics and malformed input."""

from __future__ import annotations

import dataclasses
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lectern_app import serialize

ATOM = "{http://www.w3.org/2005/Atom}"
ACQ = "application/atom+xml;profile=opds-catalog;kind=acquisition"
NAV = "application/atom+xml;profile=opds-catalog;kind=navigation"


def _links(feed: ET.Element) -> dict[str, str]:
    return {str(ln.get("rel")): str(ln.get("href")) for ln in feed.findall(f"{ATOM}link")}


def test_opds_root_is_navigation(shared_client: TestClient) -> None:
    r = shared_client.get("/opds/")
    assert r.status_code == 200
    assert r.headers["content-type"] == NAV
    feed = ET.fromstring(r.content)
    entries = feed.findall(f"{ATOM}entry")
    subs = {e.findtext(f"{ATOM}title"): e.find(f"{ATOM}link") for e in entries}
    assert subs["Recently added"] is not None
    assert subs["Recently added"].get("type") == ACQ  # type: ignore[union-attr]
    assert subs["Authors"].get("type") == NAV  # type: ignore[union-attr]
    assert _links(feed)["search"] == "/opds/opensearch.xml"


def test_opds_acquisition_paging_rfc5005(
    shared_client: TestClient, listing: list[dict[str, Any]]
) -> None:
    r = shared_client.get("/opds/recent?per_page=7")
    assert r.headers["content-type"] == ACQ  # spec-correct, unlike calibre-web
    feed = ET.fromstring(r.content)
    links = _links(feed)
    assert links["first"] == "/opds/recent?per_page=7&page=1"
    assert links["next"] == "/opds/recent?per_page=7&page=2"
    assert "previous" not in links
    total = int(feed.findtext("{http://a9.com/-/spec/opensearch/1.1/}totalResults") or 0)
    assert total == len(listing)
    seen: list[str] = []
    href: str | None = "/opds/recent?per_page=7"
    while href:
        f = ET.fromstring(shared_client.get(href).content)
        seen += [str(e.findtext(f"{ATOM}id")) for e in f.findall(f"{ATOM}entry")]
        lk = _links(f)
        href = lk.get("next")
        if href is None:
            assert lk["last"] == lk["self"]
    assert sorted(seen) == sorted(f"urn:uuid:{cb['uuid']}" for cb in listing)


def test_opds_entry_has_acquisition_and_image_links(
    shared_client: TestClient, listing: list[dict[str, Any]]
) -> None:
    feed = ET.fromstring(shared_client.get("/opds/search", params={"q": "kafka"}).content)
    (entry,) = feed.findall(f"{ATOM}entry")
    rels = [(ln.get("rel"), ln.get("type")) for ln in entry.findall(f"{ATOM}link")]
    assert ("http://opds-spec.org/acquisition", "application/epub+zip") in rels
    assert ("http://opds-spec.org/acquisition", "application/pdf") in rels
    assert ("http://opds-spec.org/image", "image/jpeg") in rels
    assert ("http://opds-spec.org/image/thumbnail", "image/jpeg") in rels
    names = [a.findtext(f"{ATOM}name") for a in entry.findall(f"{ATOM}author")]
    assert names == ["Zed Last", "Amy First", "Mid Dle"]
    for ln in entry.findall(f"{ATOM}link"):
        if ln.get("rel") == "http://opds-spec.org/acquisition":
            assert shared_client.get(str(ln.get("href"))).status_code == 200


def test_opds_categories_and_opensearch(shared_client: TestClient) -> None:
    feed = ET.fromstring(shared_client.get("/opds/authors").content)
    first = feed.findall(f"{ATOM}entry")[0]
    href = str(first.find(f"{ATOM}link").get("href"))  # type: ignore[union-attr]
    r = shared_client.get(href)
    assert r.headers["content-type"] == ACQ
    assert ET.fromstring(r.content).findall(f"{ATOM}entry")
    osd = shared_client.get("/opds/opensearch.xml")
    assert osd.headers["content-type"].startswith("application/opensearchdescription+xml")
    assert "{searchTerms}" in osd.text
    assert shared_client.get("/opds/authors/999999").status_code == 404
    assert shared_client.get("/opds/recent", params={"page": 99}).status_code == 404


def test_web_pages(shared_client: TestClient) -> None:
    home = shared_client.get("/?per_page=10")
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert 'name="viewport"' in home.text
    assert "<script" not in home.text  # works without JavaScript
    assert 'rel="next"' in home.text
    assert "Page 1 of 1" not in home.text
    s = shared_client.get("/search", params={"q": "الرمل"})
    assert "كتاب الرمل" in s.text
    b = shared_client.get("/book/1")
    assert "Ḱafka on the Shore" in b.text
    assert "/api/files/download/1/epub" in b.text
    assert "/api/files/download/1/pdf" in b.text
    for kind in ("authors", "series", "tags", "publishers", "languages"):
        page = shared_client.get(f"/{kind}")
        assert page.status_code == 200, kind
    assert "Zed Last" in shared_client.get("/authors", params={"q": "zed"}).text
    missing = shared_client.get("/book/424242", headers={"accept": "text/html"})
    assert missing.status_code == 404
    assert "Traceback" not in missing.text
    assert shared_client.get("/static/style.css").status_code == 200


def test_download_headers_range_and_etag(
    shared_client: TestClient, listing: list[dict[str, Any]]
) -> None:
    cb = next(c for c in listing if c["id"] == 1)
    epub = Path(next(p for p in cb["formats"] if p.endswith(".epub")))
    data = epub.read_bytes()
    r = shared_client.get("/api/files/download/1/epub")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "application/epub+zip"
    assert "attachment" in r.headers["content-disposition"]
    assert "filename" in r.headers["content-disposition"]
    assert r.headers["etag"] and r.headers["last-modified"]
    part = shared_client.get("/api/files/download/1/EPUB", headers={"range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == data[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"
    assert shared_client.get("/api/files/download/1/mobi").status_code == 404
    assert shared_client.get("/api/files/download/2/epub").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/files/download/1/..%2F..%2Fmetadata.db",
        "/api/files/download/1/../../metadata.db",
        "/api/files/download/1/epub%00",
        "/api/files/download/-1/epub",
        "/api/files/cover/1/../../../etc/passwd",
        "/static/../metadata.db",
        "/static/..%2f..%2fmain.py",
    ],
)
def test_path_traversal_is_refused(shared_client: TestClient, path: str) -> None:
    r = shared_client.get(path)
    assert r.status_code in (400, 404, 422), (path, r.status_code)
    assert b"SQLite format" not in r.content


def test_covers_original_thumbnail_and_caching(
    shared_client: TestClient, listing: list[dict[str, Any]]
) -> None:
    cb = next(c for c in listing if c["id"] == 1)
    original = Path(cb["cover"]).read_bytes()
    book = shared_client.get("/api/books/1").json()
    r = shared_client.get(book["cover_url"])
    assert r.status_code == 200
    assert r.content == original
    assert r.headers["content-type"] == "image/jpeg"
    assert "immutable" in r.headers["cache-control"]
    t = shared_client.get(book["thumbnail_url"])
    assert t.status_code == 200
    assert t.content[:2] == b"\xff\xd8"
    assert t.content != original
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(t.content)).width == 240
    again = shared_client.get(book["thumbnail_url"], headers={"if-none-match": t.headers["etag"]})
    assert again.status_code == 304
    unversioned = shared_client.get("/api/files/cover/1")
    assert "immutable" not in unversioned.headers["cache-control"]
    no_cover = next(c for c in listing if "cover" not in c)
    assert shared_client.get(f"/api/files/cover/{no_cover['id']}").status_code == 404
    data_dir = shared_client.app.state.services.settings.data_dir  # type: ignore[attr-defined]
    assert list(Path(data_dir, "thumbnails").rglob("1-*-w240.jpg"))


def test_metrics(shared_client: TestClient) -> None:
    shared_client.get("/api/books")
    shared_client.get("/api/books")
    text = shared_client.get("/metrics").text
    assert "lectern_http_request_duration_seconds_bucket" in text
    assert 'lectern_cache_hits_total{cache="responses"}' in text
    assert "lectern_cache_misses_total" in text
    assert 'lectern_library_reloads_total{result="ok"}' in text
    assert "lectern_library_books 30.0" in text


def test_metrics_route_labels_stay_few(shared_client: TestClient) -> None:
    """Paths that do not exist never become label values of their own."""
    for i in range(5):
        shared_client.get(f"/api/nothing-{i}")
        shared_client.get(f"/api/files/nothing-{i}/1")
    text = shared_client.get("/metrics").text
    assert "nothing-" not in text
    assert 'route="/api/other"' in text
    assert 'route="/api/files/other"' in text


BAD = [
    "/api/books?page=0",
    "/api/books?page=abc",
    "/api/books?per_page=100000",
    "/api/books?sort=bogus",
    "/api/books?order=sideways",
    "/api/books?rating=9",
    "/api/books?author_id=x",
    "/api/books/abc",
    "/api/authors?sort=weird",
    "/api/files/cover/1?size=huge",
    "/opds/recent?page=-3",
    "/opds/nonsense",
    "/book/xyz",
]


@pytest.mark.parametrize("url", BAD)
def test_malformed_parameters_are_4xx(shared_client: TestClient, url: str) -> None:
    r = shared_client.get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code)


def test_random_garbage_never_500(shared_client: TestClient) -> None:
    rnd = random.Random(1)
    alphabet = "az09%&=?/.-_~ éñ<>\"'"
    params = ["page", "per_page", "sort", "order", "q", "tag", "author_id", "rating", "format"]
    for _ in range(200):

        def junk() -> str:
            return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8)))

        qs = "&".join(f"{rnd.choice(params)}={junk()}" for _ in range(rnd.randint(1, 4)))
        for base in ("/api/books", "/", "/opds/search", "/api/tags"):
            r = shared_client.get(f"{base}?{qs}")
            assert r.status_code < 500, (base, qs, r.status_code)


def test_repeated_download_from_memory_keeps_headers(
    shared_client: TestClient, listing: list[dict[str, Any]]
) -> None:
    first = shared_client.get("/api/files/download/1/pdf")
    second = shared_client.get("/api/files/download/1/pdf")  # served by the fast path
    assert first.content == second.content
    for h in ("content-type", "content-disposition", "etag", "last-modified", "content-length"):
        assert first.headers[h] == second.headers[h], h
    assert first.headers["content-type"] == "application/pdf"
    again = shared_client.get(
        "/api/files/download/1/pdf", headers={"if-none-match": first.headers["etag"]}
    )
    assert again.status_code == 304
    part = shared_client.get("/api/files/download/1/pdf", headers={"range": "bytes=0-3"})
    assert part.status_code == 206
    assert part.content == b"%PDF"


def test_two_cover_changes_within_a_second_are_two_versions(client: TestClient) -> None:
    """calibre stamps last_modified to the microsecond; cover URLs, ETags and thumbnail
    names follow it to the millisecond, so a second replace is never served stale."""
    svc = client.app.state.services  # type: ignore[attr-defined]
    lib = svc.state.get()
    book = next(b for b in lib.books.values() if b.has_cover)
    later = dataclasses.replace(book, last_modified_epoch=book.last_modified_epoch + 0.4)
    assert later.cover_version != book.cover_version
    assert svc.thumbnails.path_for(lib, later) != svc.thumbnails.path_for(lib, book)
    assert serialize.cover_urls(later) != serialize.cover_urls(book)
