"""KOReader sync (kosync protocol) against the app, with document ids computed the way
KOReader computes them (partial MD5) from the library's format files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lectern_app.accounts.kosync import partial_md5

from .accounts_support import (
    PASSWORD,
    bearer,
    create_user,
    login,
    make_app,
    pg_url,
    postgres_server,
)

__all__ = ["make_app", "pg_url", "postgres_server"]


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def ko(user: str, key: str) -> dict[str, str]:
    return {
        "x-auth-user": user,
        "x-auth-key": key,
        "accept": "application/vnd.koreader.v1+json",
    }


def test_partial_md5_matches_koreader_sampling(tmp_path: Path) -> None:
    data = bytes((i * 7 + i // 251) % 256 for i in range(3 * 1024 * 1024))
    f = tmp_path / "book.bin"
    f.write_bytes(data)
    # KOReader: for i=-1..10 seek(lshift(1024, 2i)); lshift(1024,-2) wraps to 0 in LuaJIT
    offsets = [0, 1024, 4096, 16384, 65536, 262144, 1048576]  # next, 4 MiB, is past EOF
    expected = hashlib.md5(b"".join(data[o : o + 1024] for o in offsets)).hexdigest()
    assert partial_md5(f) == expected
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1500)
    assert partial_md5(small) == hashlib.md5(b"x" * 1024 + b"x" * 476).hexdigest()


def test_registration_can_be_disabled(make_app: Any, tmp_path: Path) -> None:
    c = make_app(None, f"sqlite:///{tmp_path / 'a.db'}")  # KOSYNC_REGISTRATION=false
    r = c.post("/users/create", json={"username": "ko", "password": md5("pw")})
    assert r.status_code == 402 and r.json() == {
        "code": 2005,
        "message": "User registration is disabled.",
    }


def test_kosync_protocol_and_progress_in_library(make_app: Any, library: Path, pg_url: str) -> None:
    c = make_app(library, pg_url, kosync_registration=True)
    # a web user's KOReader key is md5(password), no separate password
    create_user(c, "web")
    assert c.get("/users/auth", headers=ko("web", md5(PASSWORD))).json() == {"authorized": "OK"}
    r = c.get("/users/auth", headers=ko("web", md5("wrong")))
    assert r.status_code == 401 and r.json() == {"code": 2001, "message": "Unauthorized"}
    assert c.get("/users/auth").status_code == 401

    # registration from KOReader, duplicate refused
    r = c.post("/users/create", json={"username": "kobo", "password": md5("kindle-pass-1")})
    assert r.status_code == 201 and r.json() == {"username": "kobo"}
    r = c.post("/users/create", json={"username": "kobo", "password": md5("x")})
    assert r.status_code == 402 and r.json()["code"] == 2002
    assert c.post("/users/create", json={"username": "x"}).json()["code"] == 2003

    # KOReader's document id for book 1's EPUB maps back to book 1
    epub = next((library).glob("*/*(1)/*.epub"))
    doc = partial_md5(epub)
    h = ko("kobo", md5("kindle-pass-1"))
    body = {
        "document": doc,
        "progress": "/body/DocFragment[12]/body/p[3]/text().17",
        "percentage": 0.3125,
        "device": "Kobo Libra",
        "device_id": "ABC123",
    }
    r = c.put("/syncs/progress", json=body, headers=h)
    assert r.status_code == 200 and r.json()["document"] == doc and r.json()["timestamp"] > 0
    got = c.get(f"/syncs/progress/{doc}", headers=h).json()
    assert {k: got[k] for k in body} == body
    assert c.get(f"/syncs/progress/{doc}", headers=ko("web", md5(PASSWORD))).json() == {}
    missing = c.put("/syncs/progress", json={**body, "document": ""}, headers=h)
    assert missing.status_code == 403 and missing.json()["code"] == 2004
    bad = c.put("/syncs/progress", json={**body, "percentage": 7}, headers=h)
    assert bad.status_code == 403 and bad.json()["code"] == 2003
    unknown = c.put("/syncs/progress", json={**body, "document": "0" * 32}, headers=h)
    assert unknown.status_code == 200  # a document not in the library is stored anyway

    # the KOReader-registered user signs in to the web with the password behind the key
    tok = login(c, "kobo", "kindle-pass-1")["access_token"]
    prog = c.get("/api/user/progress/1", headers=bearer(tok)).json()
    assert prog["percentage"] == 31.25 and prog["device"] == "Kobo Libra"
    assert prog["location"] == body["progress"] and prog["book"]["available"]
