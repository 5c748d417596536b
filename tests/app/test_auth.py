"""Accounts and auth over real HTTP (TestClient) on SQLite and a real PostgreSQL."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from lectern_app.accounts import authcache
from sqlalchemy import event

from .accounts_support import (
    PASSWORD,
    admin_headers,
    basic,
    bearer,
    create_user,
    db_url,
    login,
    make_app,
    pg_url,
    postgres_server,
)

__all__ = ["db_url", "make_app", "pg_url", "postgres_server"]


def test_login_refresh_rotation_and_reuse_revokes_family(make_app: Any, db_url: str) -> None:
    c = make_app(None, db_url, refresh_grace=0)  # every second presentation is a replay
    by_email = login(c, "ADMIN@example.org")  # username or email, case-insensitive
    assert by_email["user"]["role"] == "admin" and by_email["expires_in"] == 1800
    t0 = login(c)
    me = c.get("/api/user/me", headers=bearer(t0["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == "admin"

    r1 = c.post("/api/auth/refresh", data={"refresh_token": t0["refresh_token"]})
    assert r1.status_code == 200
    t1 = r1.json()
    assert t1["refresh_token"] != t0["refresh_token"]
    # the spent token comes back: 401, and the whole family (t1 too) is revoked
    again = c.post("/api/auth/refresh", data={"refresh_token": t0["refresh_token"]})
    assert again.status_code == 401 and again.json()["detail"]["error"] == "refresh_reused"
    r2 = c.post("/api/auth/refresh", data={"refresh_token": t1["refresh_token"]})
    assert r2.status_code == 401
    # another session (family) is untouched
    r3 = c.post("/api/auth/refresh", data={"refresh_token": by_email["refresh_token"]})
    assert r3.status_code == 200
    # an access token is not a refresh token
    assert (
        c.post("/api/auth/refresh", data={"refresh_token": t0["access_token"]}).status_code == 401
    )


def test_logout_revokes_the_session(make_app: Any, tmp_path: Path) -> None:
    c = make_app(None, f"sqlite:///{tmp_path / 'a.db'}")
    t = login(c)
    assert c.post("/api/auth/logout", data={"refresh_token": t["refresh_token"]}).status_code == 204
    assert (
        c.post("/api/auth/refresh", data={"refresh_token": t["refresh_token"]}).status_code == 401
    )


def test_wrong_password_and_brute_force_429(make_app: Any, tmp_path: Path) -> None:
    c = make_app(None, f"sqlite:///{tmp_path / 'a.db'}", login_max_per_account=3)
    for _ in range(3):
        r = c.post("/api/auth/login", data={"username": "admin", "password": "nope-nope"})
        assert r.status_code == 401
    r = c.post("/api/auth/login", data={"username": "admin", "password": "nope-nope"})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    # the right password is refused too while the account is locked out
    r = c.post("/api/auth/login", data={"username": "admin", "password": PASSWORD})
    assert r.status_code == 429


def test_per_ip_limit(make_app: Any, tmp_path: Path) -> None:
    c = make_app(None, f"sqlite:///{tmp_path / 'a.db'}", login_max_per_ip=4)
    codes = [
        c.post("/api/auth/login", data={"username": f"u{i}", "password": "x" * 8}).status_code
        for i in range(6)
    ]
    assert codes[:4] == [401] * 4 and codes[4:] == [429, 429]


def test_admin_api_and_roles(make_app: Any, db_url: str) -> None:
    c = make_app(None, db_url)
    adm = admin_headers(c)
    uid = create_user(c, "bob")
    users = c.get("/api/admin/users", headers=adm).json()
    assert {u["username"] for u in users} == {"admin", "bob"}
    assert all("password" not in str(k) for u in users for k in u)
    dup = c.post("/api/admin/users", json={"username": "BOB", "password": PASSWORD}, headers=adm)
    assert dup.status_code == 409
    weak = c.post("/api/admin/users", json={"username": "eve", "password": "short"}, headers=adm)
    assert weak.status_code == 422
    bob = bearer(login(c, "bob")["access_token"])
    assert c.get("/api/admin/users", headers=bob).status_code == 403
    assert c.get("/api/admin/users").status_code == 401
    # admins cannot lock themselves out
    me = c.get("/api/user/me", headers=adm).json()["id"]
    assert (
        c.patch(f"/api/admin/users/{me}", json={"disabled": True}, headers=adm).status_code == 409
    )
    assert (
        c.patch(f"/api/admin/users/{uid}", json={"role": "admin"}, headers=adm).status_code == 200
    )


def test_disable_and_password_reset_take_effect_at_once(make_app: Any, db_url: str) -> None:
    c = make_app(None, db_url)  # auth cache ON (default)
    adm = admin_headers(c)
    uid = create_user(c, "carol")
    tok = login(c, "carol")
    h = bearer(tok["access_token"])
    creds = basic("carol", PASSWORD)
    for _ in range(3):  # warm the cache: JWT user and the verified Basic credential
        assert c.get("/api/user/me", headers=h).status_code == 200
        assert c.get("/api/user/me", headers=creds).status_code == 200
    seen: list[int] = []
    authcache.on_user_changed.append(seen.append)
    try:
        r = c.patch(f"/api/admin/users/{uid}", json={"disabled": True}, headers=adm)
        assert r.status_code == 200 and r.json()["disabled"] is True
    finally:
        authcache.on_user_changed.remove(seen.append)
    assert seen == [uid]
    assert c.get("/api/user/me", headers=h).status_code == 401
    assert c.get("/api/user/me", headers=creds).status_code == 401
    assert (
        c.post("/api/auth/refresh", data={"refresh_token": tok["refresh_token"]}).status_code == 401
    )
    r = c.post("/api/auth/login", data={"username": "carol", "password": PASSWORD})
    assert r.status_code == 403
    # enable again, then reset the password: old token and old Basic password die at once
    c.patch(f"/api/admin/users/{uid}", json={"disabled": False}, headers=adm)
    h2 = bearer(login(c, "carol")["access_token"])
    assert c.get("/api/user/me", headers=h2).status_code == 200
    assert c.get("/api/user/me", headers=creds).status_code == 200
    new_pw = "a brand new passphrase"
    r = c.post(f"/api/admin/users/{uid}/password", json={"password": new_pw}, headers=adm)
    assert r.status_code == 200
    assert c.get("/api/user/me", headers=h2).status_code == 401
    assert c.get("/api/user/me", headers=creds).status_code == 401
    assert c.get("/api/user/me", headers=basic("carol", new_pw)).status_code == 200


def test_own_password_change(make_app: Any, tmp_path: Path) -> None:
    c = make_app(None, f"sqlite:///{tmp_path / 'a.db'}")
    create_user(c, "dave")
    h = bearer(login(c, "dave")["access_token"])
    bad = {"current_password": "wrong-wrong", "new_password": "another passphrase"}
    assert c.put("/api/user/me/password", json=bad, headers=h).status_code == 403
    good = {"current_password": PASSWORD, "new_password": "another passphrase"}
    assert c.put("/api/user/me/password", json=good, headers=h).status_code == 204
    assert c.get("/api/user/me", headers=h).status_code == 401
    login(c, "dave", "another passphrase")


def _count_queries(c: Any) -> list[str]:
    statements: list[str] = []
    engine = c.app.state.accounts.db.engine

    @event.listens_for(engine, "before_cursor_execute")
    def _on(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        statements.append(statement)

    return statements


def test_auth_cache_means_no_query_per_request(make_app: Any, library: Path, db_url: str) -> None:
    c = make_app(library, db_url)
    h = bearer(login(c)["access_token"])
    creds = basic("admin", PASSWORD)
    c.get("/api/books", headers=h)
    c.get("/opds/", headers=creds)
    q = _count_queries(c)
    for _ in range(20):
        assert c.get("/api/books", headers=h).status_code == 200
        assert c.get("/opds/", headers=creds).status_code == 200
    assert q == []


def test_without_cache_each_request_asks_the_db(
    make_app: Any, library: Path, tmp_path: Path
) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}", auth_cache=False)
    h = bearer(login(c)["access_token"])
    q = _count_queries(c)
    for _ in range(5):
        assert c.get("/api/books", headers=h).status_code == 200
    assert len([s for s in q if "FROM users" in s]) == 5


def test_secret_key_generated_0600_and_kept(make_app: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    data = tmp_path / "d1"
    c = make_app(None, url, data_dir=data)
    tok = login(c)["access_token"]
    key = data / "secret_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(url.removeprefix("sqlite:///")).stat().st_mode) == 0o600
    c2 = make_app(None, url, data_dir=data)  # a restart: same key, token still valid
    assert c2.get("/api/user/me", headers=bearer(tok)).status_code == 200
    c3 = make_app(None, url, data_dir=tmp_path / "d3", secret_key="given-secret-" + "x" * 32)
    assert not (tmp_path / "d3" / "secret_key").exists()
    assert c3.get("/api/user/me", headers=bearer(tok)).status_code == 401  # other key


def test_no_default_admin(make_app: Any, tmp_path: Path) -> None:
    c = make_app(None, f"sqlite:///{tmp_path / 'a.db'}", admin_username=None, admin_password=None)
    for pw in ("admin", "password", "changeme", PASSWORD):
        r = c.post("/api/auth/login", data={"username": "admin", "password": pw})
        assert r.status_code == 401
    assert c.app.state.accounts.list_users() == []


def test_cli_creates_admin_and_disable_reaches_running_server(
    make_app: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    data = tmp_path / "data"
    c = make_app(None, url, data_dir=data, admin_username=None, admin_password=None)
    env = {**os.environ, "DATA_DIR": str(data), "DATABASE_URL": url}

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lectern_app", "admin", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = cli("create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    h = bearer(login(c, "root")["access_token"])
    for _ in range(3):
        assert c.get("/api/user/me", headers=h).status_code == 200  # cached now
    assert cli("disable", "root").returncode == 0  # another process
    assert c.get("/api/user/me", headers=h).status_code == 401
    r = cli("reset-password", "root", "--password-stdin", stdin="x\n")  # too short
    assert r.returncode == 1 and "error" in r.stderr


def test_api_tokens(make_app: Any, library: Path, tmp_path: Path) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}", auth_required=True)
    create_user(c, "erin")
    h = bearer(login(c, "erin")["access_token"])
    r = c.post("/api/user/tokens", json={"name": "kobo"}, headers=h)
    assert r.status_code == 201
    token, tid = r.json()["token"], r.json()["id"]
    assert token.startswith("lct_")
    assert token not in str(c.get("/api/user/tokens", headers=h).json())
    assert c.get("/api/books", headers=bearer(token)).status_code == 200
    assert c.get("/opds/", headers=basic("erin", token)).status_code == 200
    assert c.get("/opds/", headers=basic("someone-else", token)).status_code == 401
    assert c.delete(f"/api/user/tokens/{tid}", headers=h).status_code == 204
    assert c.get("/api/books", headers=bearer(token)).status_code == 401


def test_auth_required_switch(make_app: Any, library: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    open_app = make_app(library, url, data_dir=tmp_path / "d1")
    assert open_app.get("/api/books").status_code == 200  # default: anonymous browsing
    assert open_app.get("/opds/").status_code == 200
    assert open_app.get("/api/user/me").status_code == 401  # personal data always needs a user
    # wrong credentials are refused, not downgraded to anonymous
    assert open_app.get("/opds/", headers=basic("admin", "wrong-password")).status_code == 401

    c = make_app(library, url, data_dir=tmp_path / "d1", auth_required=True)
    assert c.get("/api/health").status_code == 200  # health stays anonymous
    r = c.get("/api/books")
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    r = c.get("/opds/")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert c.get("/opds/", headers=basic("admin", PASSWORD)).status_code == 200
    r = c.get("/", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # a cached response is never handed to an anonymous client
    h = bearer(login(c)["access_token"])
    assert c.get("/api/books/1", headers=h).status_code == 200
    assert c.get("/api/books/1").status_code == 401
    assert c.get("/api/files/download/1/epub").status_code == 401


def test_expired_refresh_tokens_are_pruned(make_app: Any, db_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from lectern_app.accounts.models import RefreshToken
    from sqlalchemy import func, select, update

    c = make_app(None, db_url)
    login(c)
    live = login(c)
    acc = c.app.state.accounts
    with acc.db.session() as db:
        first = db.scalars(select(RefreshToken).order_by(RefreshToken.issued_at)).first()
        db.execute(
            update(RefreshToken)
            .where(RefreshToken.jti == first.jti)
            .values(expires_at=datetime.now(UTC) - timedelta(days=1))
        )
    assert acc.prune() == 1
    with acc.db.session() as db:
        assert db.scalar(select(func.count()).select_from(RefreshToken)) == 1
    assert (
        c.post("/api/auth/refresh", data={"refresh_token": live["refresh_token"]}).status_code
        == 200
    )


def test_accounts_db_gone_is_503_not_500_and_browsing_goes_on(
    make_app: Any, library: Path, postgres_server: dict[str, Any]
) -> None:
    import psycopg

    from .accounts_support import new_pg_database

    url = new_pg_database(postgres_server)
    c = make_app(library, url, auth_cache=False)
    h = bearer(login(c)["access_token"])
    assert c.get("/api/user/me", headers=h).status_code == 200
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    c.app.state.accounts.db.engine.dispose()
    with psycopg.connect(
        host=postgres_server["host"],
        port=postgres_server["port"],
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    assert c.get("/api/user/me", headers=h).status_code == 503
    assert c.get("/api/books").status_code == 200  # anonymous browsing is unaffected
