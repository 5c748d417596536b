"""The API's answers equal what `calibredb list --for-machine --fields all` says."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

UNDEFINED = "0101-01-01T00:00:00+00:00"


def _date(v: str | None) -> str | None:
    return None if v in (None, "", UNDEFINED) else v


def test_every_book_matches_calibredb(
    shared_client: TestClient, listing: list[dict[str, Any]], built_library: Any
) -> None:
    root: Path = built_library[0]
    assert len(listing) == 5 + 25
    for cb in listing:
        r = shared_client.get(f"/api/books/{cb['id']}")
        assert r.status_code == 200, r.text
        b = r.json()
        assert b["title"] == cb["title"]
        assert " & ".join(b["authors"]) == cb["authors"]  # order = calibre's link order
        assert b["author_sort"] == cb["author_sort"]
        assert b["series"] == cb.get("series")
        assert b["series_index"] == pytest.approx(cb["series_index"])
        assert b["rating"] == cb.get("rating")
        assert sorted(b["tags"]) == sorted(cb["tags"])
        assert b["languages"] == cb["languages"]
        assert b["publisher"] == cb.get("publisher")
        assert b["identifiers"] == cb["identifiers"]
        assert b["isbn"] == cb["isbn"]
        assert b["comments"] == cb.get("comments")
        assert b["uuid"] == cb["uuid"]
        assert b["size"] == cb["size"]
        assert b["added"] == cb["timestamp"]
        assert b["last_modified"] == cb["last_modified"]
        assert b["pubdate"] == _date(cb["pubdate"])
        paths = sorted(os.path.join(root, b["path"], f["filename"]) for f in b["formats"])
        assert paths == sorted(str(Path(p)) for p in cb["formats"])
        assert b["has_cover"] == ("cover" in cb)
        for key, value in cb.items():
            if key.startswith("*"):
                mine = b["custom_columns"].get(key[1:], {}).get("value")
                assert (mine if mine is not None else ([] if value == [] else None)) == value


def test_listing_totals_and_paging(
    shared_client: TestClient, listing: list[dict[str, Any]]
) -> None:
    r = shared_client.get("/api/books", params={"per_page": 7, "sort": "id", "order": "asc"})
    body = r.json()
    assert body["total"] == len(listing)
    assert body["pages"] == -(-len(listing) // 7)
    seen: list[int] = []
    for page in range(1, body["pages"] + 1):
        items = shared_client.get(
            "/api/books", params={"per_page": 7, "page": page, "sort": "id", "order": "asc"}
        ).json()["items"]
        seen += [i["id"] for i in items]
    assert seen == sorted(cb["id"] for cb in listing)


def test_categories_counts_match_calibredb(
    shared_client: TestClient, listing: list[dict[str, Any]]
) -> None:
    expected_authors = Counter(a for cb in listing for a in cb["authors"].split(" & "))
    expected_tags = Counter(t for cb in listing for t in cb["tags"])
    expected_series = Counter(cb["series"] for cb in listing if cb.get("series"))
    expected_pub = Counter(cb["publisher"] for cb in listing if cb.get("publisher"))
    expected_lang = Counter(la for cb in listing for la in cb["languages"])
    for kind, expected in (
        ("authors", expected_authors),
        ("tags", expected_tags),
        ("series", expected_series),
        ("publishers", expected_pub),
        ("languages", expected_lang),
    ):
        body = shared_client.get(f"/api/{kind}", params={"per_page": 1000}).json()
        got = {i["name"]: i["count"] for i in body["items"]}
        assert got == dict(expected), kind
        assert body["total"] == len(expected)


def test_author_order_is_link_order_not_alphabetical(shared_client: TestClient) -> None:
    items = shared_client.get("/api/books", params={"q": "many hands"}).json()["items"]
    assert items[0]["authors"] == ["Ula Fifth", "Bo Second", "Cy Third", "Al First", "Di Fourth"]


def test_series_sort_uses_fractional_index(shared_client: TestClient) -> None:
    items = shared_client.get(
        "/api/books", params={"series": "série ñoño", "sort": "series", "order": "asc"}
    ).json()["items"]
    assert [i["series_index"] for i in items] == [0.25, 1.5, 2.75]


def test_filters(shared_client: TestClient, listing: list[dict[str, Any]]) -> None:
    for params, pred in (
        ({"author": "Amy First"}, lambda cb: "Amy First" in cb["authors"].split(" & ")),
        ({"tag": "fiction"}, lambda cb: "Fiction" in cb["tags"]),
        ({"publisher": "Gallimard"}, lambda cb: cb.get("publisher") == "Gallimard"),
        ({"language": "deu"}, lambda cb: "deu" in cb["languages"]),
        ({"format": "txt"}, lambda cb: any(p.endswith(".txt") for p in cb["formats"])),
        ({"rating": 3.5}, lambda cb: (cb.get("rating") or 0) >= 7),
        (
            {"tag": "Fiction", "rating": 3},
            lambda cb: "Fiction" in cb["tags"] and (cb.get("rating") or 0) >= 6,
        ),
    ):
        body = shared_client.get("/api/books", params={**params, "per_page": 200}).json()
        assert sorted(i["id"] for i in body["items"]) == sorted(
            cb["id"] for cb in listing if pred(cb)
        ), params
    assert shared_client.get("/api/books", params={"author": "Nobody"}).json()["total"] == 0


def test_sorting(shared_client: TestClient, listing: list[dict[str, Any]]) -> None:
    def ids(**p: Any) -> list[int]:
        return [
            i["id"]
            for i in shared_client.get("/api/books", params={**p, "per_page": 200}).json()["items"]
        ]

    assert ids(sort="id") == sorted(cb["id"] for cb in listing)
    assert ids(sort="id", order="desc") == sorted((cb["id"] for cb in listing), reverse=True)
    by_rating = [cb.get("rating") or -1 for cb in sorted(listing, key=lambda c: c["id"])]
    ratings = {cb["id"]: cb.get("rating") or -1 for cb in listing}
    got = [ratings[i] for i in ids(sort="rating")]
    assert got == sorted(by_rating, reverse=True)
    added = ids(sort="added", order="asc")
    assert added == sorted(
        added, key=lambda i: next(c["timestamp"] for c in listing if c["id"] == i)
    )


@pytest.mark.parametrize(
    ("q", "expected_first"),
    [
        ("shore NAIVE cafe", "Ḱafka on the Shore — naïve café"),  # diacritics-insensitive
        ("KAFKA", "Ḱafka on the Shore — naïve café"),  # case + precomposed Ḱ
        ("zoe angstrom", "Zoë's Ångström Notebook"),
        ("الرمل", "كتاب الرمل"),  # RTL
        ("xylophone", "Xylophone Lessons"),  # title beats a comments-only hit
        ("ñoño 0.25", None),
    ],
)
def test_search(shared_client: TestClient, q: str, expected_first: str | None) -> None:
    body = shared_client.get("/api/books", params={"q": q}).json()
    if expected_first is None:
        assert body["total"] == 0
        return
    assert body["items"][0]["title"] == expected_first
    assert body["sort"] == "relevance"


def test_search_ranks_and_requires_every_token(shared_client: TestClient) -> None:
    titles = [
        i["title"]
        for i in shared_client.get("/api/books", params={"q": "xylophone"}).json()["items"]
    ]
    assert titles == ["Xylophone Lessons", "Zoë's Ångström Notebook"]
    assert shared_client.get("/api/books", params={"q": "xylophone plain"}).json()["total"] == 1


def test_empty_library(empty_library: Path, client_for: Any) -> None:
    c = client_for(empty_library)
    assert c.get("/api/books").json()["total"] == 0
    assert c.get("/api/authors").json()["items"] == []
    h = c.get("/api/health")
    assert h.status_code == 200
    assert h.json()["books"] == 0
