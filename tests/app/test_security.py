"""Security: token forgery, path traversal on every file endpoint, SQL injection in search
and filters (library and accounts), brute force on Basic -> 429."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from lectern_app.accounts.models import RefreshToken

from .accounts_support import PASSWORD, basic, bearer, login, make_app

__all__ = ["make_app"]


FAMILY = "f" * 32  # a live sign-in of user 1, made by the fixture


@pytest.fixture
def app_and_key(make_app: Any, library: Path, tmp_path: Path) -> tuple[Any, str]:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}", data_dir=tmp_path / "data")
    key = (tmp_path / "data" / "secret_key").read_text().strip()
    with c.app.state.accounts.db.session() as db:
        db.add(
            RefreshToken(
                jti="j" * 32,
                user_id=1,
                family=FAMILY,
                issued_at=datetime.now(UTC),
                expires_at=datetime.now(UTC) + timedelta(days=1),
            )
        )
    return c, key


def _claims(**kw: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": "lectern",
        "aud": "lectern:access",
        "sub": "1",
        "ver": 1,
        "fam": FAMILY,
        "iat": now,
        "exp": now + 600,
        "jti": "x" * 32,
    }
    base.update(kw)
    return base


def _b64(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def test_a_correctly_signed_token_works(app_and_key: tuple[Any, str]) -> None:
    c, key = app_and_key
    good = jwt.encode(_claims(), key, algorithm="HS256")
    assert c.get("/api/user/me", headers=bearer(good)).status_code == 200  # the control


@pytest.mark.parametrize(
    "case",
    [
        "forged_signature",
        "alg_none",
        "alg_none_unsigned_upper",
        "hs512_same_key",
        "expired",
        "wrong_audience",
        "refresh_as_access",
        "wrong_issuer",
        "tampered_sub",
        "no_exp",
        "no_family",
        "unknown_family",
        "garbage",
    ],
)
def test_bad_tokens_are_refused(app_and_key: tuple[Any, str], case: str) -> None:
    c, key = app_and_key
    if case == "forged_signature":
        tok = jwt.encode(_claims(), "not-the-server-key-" + "x" * 20, algorithm="HS256")
    elif case == "alg_none":
        tok = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    elif case == "alg_none_unsigned_upper":
        tok = f"{_b64({'alg': 'NONE', 'typ': 'JWT'})}.{_b64(_claims())}."
    elif case == "hs512_same_key":
        tok = jwt.encode(_claims(), key, algorithm="HS512")
    elif case == "expired":
        tok = jwt.encode(_claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), key)
    elif case == "wrong_audience":
        tok = jwt.encode(_claims(aud="someone-else"), key, algorithm="HS256")
    elif case == "refresh_as_access":
        tok = login(c)["refresh_token"]
    elif case == "wrong_issuer":
        tok = jwt.encode(_claims(iss="evil"), key, algorithm="HS256")
    elif case == "tampered_sub":
        good = jwt.encode(_claims(sub="1"), key, algorithm="HS256")
        h, _, s = good.split(".")
        tok = f"{h}.{_b64(_claims(sub='2'))}.{s}"
    elif case == "no_exp":
        claims = _claims()
        del claims["exp"]
        tok = jwt.encode(claims, key, algorithm="HS256")
    elif case == "no_family":  # a token no sign-out could ever end
        claims = _claims()
        del claims["fam"]
        tok = jwt.encode(claims, key, algorithm="HS256")
    elif case == "unknown_family":
        tok = jwt.encode(_claims(fam="0" * 32), key, algorithm="HS256")
    else:
        tok = "not.a.jwt"
    r = c.get("/api/user/me", headers=bearer(tok))
    assert r.status_code == 401, (case, r.text)
    # and a bad token never falls back to anonymous on open endpoints either
    assert c.get("/api/books", headers=bearer(tok)).status_code == 401
    if case == "expired":
        assert r.json()["detail"]["error"] == "token_expired"
    if case in ("wrong_audience", "refresh_as_access"):
        assert r.json()["detail"]["error"] == "wrong_audience"


TRAVERSALS = [
    "../../../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "..%252f..%252f..%252fetc%252fpasswd",
    "....//....//....//etc/passwd",
    "..\\..\\..\\..\\etc\\passwd",
    "%2fetc%2fpasswd",
    "..%00/etc/passwd",
]


@pytest.mark.parametrize("payload", TRAVERSALS)
def test_path_traversal_on_every_file_endpoint(app_and_key: tuple[Any, str], payload: str) -> None:
    c, _ = app_and_key
    h = bearer(login(c)["access_token"])
    urls = [
        f"/api/files/download/1/{payload}",
        f"/api/files/download/{payload}/epub",
        f"/api/files/download/1/epub/{payload}",
        f"/api/files/cover/{payload}",
        f"/api/files/cover/1?size={payload}",
        f"/api/files/cover/1/{payload}",
        f"/static/{payload}",
        f"/static/../{payload}",
        f"/book/{payload}",
        f"/opds/{payload}",
        f"/opds/authors/{payload}",
        f"/syncs/progress/{payload}",
        f"/api/user/progress/{payload}",
    ]
    for url in urls:
        for headers in ({}, h):
            r = c.get(url, headers=headers)
            assert r.status_code < 500, (url, r.status_code)
            assert b"root:x:0:0" not in r.content, url
            assert b"secret_key" not in r.content


SQLI = [
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "1; DROP TABLE books; --",
    "%' --",
    "') UNION SELECT name, sql FROM sqlite_master --",
    "\\'; SELECT pg_sleep(5); --",
    "*",
]


def test_sql_injection_in_search_and_filters(app_and_key: tuple[Any, str]) -> None:
    c, _ = app_and_key
    total = c.get("/api/books").json()["total"]
    assert total > 20
    for payload in SQLI:
        for param in ("q", "author", "tag", "series", "publisher", "language", "format"):
            r = c.get("/api/books", params={param: payload})
            assert r.status_code == 200, (param, payload, r.text)
            assert r.json()["total"] < total, (param, payload)  # never "everything"
        for url in ("/api/authors", "/api/tags", "/api/series"):
            assert c.get(url, params={"q": payload}).status_code == 200
        assert c.get("/opds/search", params={"q": payload}).status_code == 200
        assert c.get("/search", params={"q": payload}).status_code == 200
        r = c.get("/api/books", params={"sort": payload})
        assert r.status_code == 422
        # the accounts DB: injection in sign-in names is just a wrong name
        r = c.post("/api/auth/login", data={"username": payload, "password": payload})
        assert r.status_code in (401, 429)
    assert c.get("/api/books").json()["total"] == total  # the library is intact
    h = bearer(login(c)["access_token"])
    for payload in SQLI[:4]:  # stored literally, read back literally
        r = c.post("/api/user/lists", json={"name": payload}, headers=h)
        assert r.status_code == 201
    names = sorted(x["name"] for x in c.get("/api/user/lists", headers=h).json())
    assert names == sorted(SQLI[:4])


def test_basic_brute_force_gets_429(make_app: Any, library: Path, tmp_path: Path) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}", login_max_per_ip=5)
    codes = [c.get("/opds/", headers=basic("admin", f"guess-{i}")).status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    r = c.get("/opds/", headers=basic("admin", "guess-again"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # kosync key guessing from the same address is cut off too (no hash spent)
    r = c.get("/users/auth", headers={"x-auth-user": "admin", "x-auth-key": "0" * 32})
    assert r.status_code == 401
    # a correct password from the same address is refused while the limit holds
    assert c.get("/opds/", headers=basic("admin", PASSWORD)).status_code == 429
