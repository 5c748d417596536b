"""Favorites, reading progress and reading lists, on SQLite and a real PostgreSQL;
a book that vanishes from the library (calibredb remove) leaves the user's data intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lectern_app.demo import run_calibredb

from .accounts_support import (
    bearer,
    create_user,
    db_url,
    login,
    make_app,
    pg_url,
    postgres_server,
)

__all__ = ["db_url", "make_app", "pg_url", "postgres_server"]


def _user(c: Any, name: str) -> dict[str, str]:
    create_user(c, name)
    return bearer(login(c, name)["access_token"])


def test_favorites_progress_lists(make_app: Any, library: Path, db_url: str) -> None:
    c = make_app(library, db_url)
    h = _user(c, "reader")
    other = _user(c, "other")
    assert c.get("/api/user/favorites").status_code == 401

    # favorites
    assert c.put("/api/user/favorites/1", headers=h).status_code == 204
    assert c.put("/api/user/favorites/1", headers=h).status_code == 204  # idempotent
    assert c.post("/api/user/favorites", json={"book_id": 2}, headers=h).status_code == 204
    assert c.put("/api/user/favorites/99999", headers=h).status_code == 404
    favs = c.get("/api/user/favorites", headers=h).json()
    assert sorted(f["book_id"] for f in favs) == [1, 2]
    assert all(f["book"]["available"] and f["book"]["title"] for f in favs)
    assert c.get("/api/user/favorites", headers=other).json() == []
    assert c.delete("/api/user/favorites/2", headers=h).status_code == 204
    assert [f["book_id"] for f in c.get("/api/user/favorites", headers=h).json()] == [1]

    # progress
    assert c.get("/api/user/progress/3", headers=h).status_code == 404
    body = {"percentage": 42.5, "location": "epubcfi(/6/4!/4/2/1:0)", "device": "phone"}
    r = c.put("/api/user/progress/3", json=body, headers=h)
    assert r.status_code == 200 and r.json()["percentage"] == 42.5
    got = c.get("/api/user/progress/3", headers=h).json()
    assert got["location"] == body["location"] and got["device"] == "phone" and got["updated_at"]
    bad = c.put("/api/user/progress/3", json={"percentage": 101}, headers=h)
    assert bad.status_code == 422
    assert c.get("/api/user/progress/3", headers=other).status_code == 404
    c.put("/api/user/progress/3", json={"percentage": 50}, headers=h)
    assert c.get("/api/user/progress/3", headers=h).json()["percentage"] == 50

    # reading lists
    r = c.post("/api/user/lists", json={"name": "Summer"}, headers=h)
    assert r.status_code == 201
    lid = r.json()["id"]
    assert c.post("/api/user/lists", json={"name": "Summer"}, headers=h).status_code == 409
    assert c.post("/api/user/lists", json={"name": "Summer"}, headers=other).status_code == 201
    for bid in (4, 5, 6):
        assert (
            c.post(f"/api/user/lists/{lid}/books", json={"book_id": bid}, headers=h).status_code
            == 204
        )
    detail = c.get(f"/api/user/lists/{lid}", headers=h).json()
    assert [b["book_id"] for b in detail["books"]] == [4, 5, 6]
    r = c.put(f"/api/user/lists/{lid}/order", json={"book_ids": [6, 4, 5]}, headers=h)
    assert r.status_code == 200 and [b["book_id"] for b in r.json()["books"]] == [6, 4, 5]
    bad_order = c.put(f"/api/user/lists/{lid}/order", json={"book_ids": [6, 4]}, headers=h)
    assert bad_order.status_code == 422
    assert c.delete(f"/api/user/lists/{lid}/books/4", headers=h).status_code == 204
    assert c.patch(f"/api/user/lists/{lid}", json={"name": "Autumn"}, headers=h).status_code == 200
    lists = c.get("/api/user/lists", headers=h).json()
    assert [(x["name"], x["count"]) for x in lists] == [("Autumn", 2)]
    # someone else's list is not found, whatever they try
    assert c.get(f"/api/user/lists/{lid}", headers=other).status_code == 404
    assert c.delete(f"/api/user/lists/{lid}", headers=other).status_code == 404
    assert c.delete(f"/api/user/lists/{lid}", headers=h).status_code == 204
    assert c.get("/api/user/lists", headers=h).json() == []


def test_vanished_book_does_not_break_user_data(
    make_app: Any, library: Path, tmp_path: Path
) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    h = _user(c, "reader")
    c.put("/api/user/favorites/7", headers=h)
    c.put("/api/user/progress/7", json={"percentage": 10}, headers=h)
    lid = c.post("/api/user/lists", json={"name": "L"}, headers=h).json()["id"]
    c.post(f"/api/user/lists/{lid}/books", json={"book_id": 7}, headers=h)
    c.post(f"/api/user/lists/{lid}/books", json={"book_id": 8}, headers=h)

    run_calibredb(library, "remove", "7")  # Calibre desktop deletes the book
    c.app.state.services.state.refresh()
    assert c.get("/api/books/7").status_code == 404

    favs = c.get("/api/user/favorites", headers=h).json()
    assert favs[0]["book_id"] == 7 and favs[0]["book"]["available"] is False
    prog = c.get("/api/user/progress/7", headers=h)
    assert prog.status_code == 200 and prog.json()["book"]["available"] is False
    books = c.get(f"/api/user/lists/{lid}", headers=h).json()["books"]
    assert [(b["book_id"], b["book"]["available"]) for b in books] == [(7, False), (8, True)]
    # and the user can still clean up
    assert (
        c.put(f"/api/user/lists/{lid}/order", json={"book_ids": [8, 7]}, headers=h).status_code
        == 200
    )
    assert c.delete(f"/api/user/lists/{lid}/books/7", headers=h).status_code == 204
    assert c.delete("/api/user/favorites/7", headers=h).status_code == 204
