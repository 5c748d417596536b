"""Web UI: sign in with a form, favorites, lists and progress from the book page, the
shelf shows them (KOReader progress too); cached library pages stay the same for all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .accounts_support import PASSWORD, create_user, make_app

__all__ = ["make_app"]


def test_web_sign_in_shelf_and_forms(make_app: Any, library: Path, tmp_path: Path) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    c.headers["origin"] = "http://testserver"  # what a browser sends with a form POST
    create_user(c, "reader")
    anon = c.get("/me", follow_redirects=False)
    assert anon.status_code == 303 and anon.headers["location"].startswith("/login")
    page = c.get("/book/1")
    assert page.status_code == 200 and 'action="/me/favorites"' in page.text

    bad = c.post("/login", data={"username": "reader", "password": "wrong-pass"})
    assert bad.status_code == 401 and "wrong username or password" in bad.text
    r = c.post(
        "/login",
        data={"username": "reader", "password": PASSWORD, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/me"  # no open redirect
    cookies = r.headers.get_list("set-cookie")
    assert all("HttpOnly" in x and "SameSite=Lax" in x for x in cookies)

    # the book page's forms
    back = c.post("/me/favorites", data={"book_id": 1, "next": "/book/1"}, follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == "/book/1"
    c.post("/me/lists/add", data={"book_id": 2, "name": "Holiday"})
    c.post("/me/lists/add", data={"book_id": 3, "name": "Holiday"})
    c.post("/me/progress", data={"book_id": 2, "percentage": 64})
    shelf = c.get("/me")
    assert shelf.status_code == 200 and shelf.headers["cache-control"] == "no-store"
    assert "Holiday" in shelf.text and "64.0%" in shelf.text
    assert 'href="/book/1"' in shelf.text
    lists = c.get("/api/user/lists").json()  # the same session (cookie) on the API
    lid = lists[0]["id"]
    c.post(f"/me/lists/{lid}/edit", data={"action": "up", "book_id": 3})
    ids = [b["book_id"] for b in c.get(f"/api/user/lists/{lid}").json()["books"]]
    assert ids == [3, 2]
    assert "Holiday" in c.get(f"/me/lists/{lid}").text

    # a cross-site form post is refused
    r = c.post("/me/favorites", data={"book_id": 4}, headers={"origin": "https://evil.example"})
    assert r.status_code == 403

    # the shared library page carries no personal data
    assert "reader" not in c.get("/book/1").text

    # sign out ends the session
    c.post("/logout")
    assert c.get("/me", follow_redirects=False).status_code == 303
    assert c.get("/api/user/lists").status_code == 401


def test_expired_access_cookie_is_renewed_from_refresh_cookie(
    make_app: Any, library: Path, tmp_path: Path
) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    c.post(
        "/login",
        data={"username": "admin", "password": PASSWORD},
        headers={"origin": "http://testserver"},
    )
    c.cookies.set("lectern_access", "expired.or.garbage")
    r = c.get("/me")
    assert r.status_code == 200 and "admin" in r.text
    assert any("lectern_access=" in x for x in r.headers.get_list("set-cookie"))
