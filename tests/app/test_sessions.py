"""Sessions end when they should and not before; forms only from this site; resets
revoke; sign-in limits count failures per client; DATA_DIR private from the first byte.

Real HTTP: TestClient on SQLite and a real PostgreSQL, and real `python -m lectern_app`
processes where several workers, parallel requests or the process umask matter.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lectern_app.accounts import authcache
from lectern_app.proxyaddr import default_gateway, trusted_proxies

from .accounts_support import (
    PASSWORD,
    admin_headers,
    bearer,
    create_user,
    db_url,
    login,
    make_app,
    pg_url,
    postgres_server,
)
from .replica_helpers import start_replicas

__all__ = ["db_url", "make_app", "pg_url", "postgres_server"]
ORIGIN = {"origin": "http://testserver"}


def _web_login(c: Any, user: str = "admin") -> None:
    r = c.post(
        "/login",
        data={"username": user, "password": PASSWORD},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


# ------------------------------------------------------------------ sign-out
def test_logout_ends_the_access_token_at_once(make_app: Any, db_url: str) -> None:
    c = make_app(None, db_url)
    t = login(c)
    keep = login(c)  # the same user on another device
    for _ in range(2):  # verified once, then from the cache
        assert c.get("/api/user/me", headers=bearer(t["access_token"])).status_code == 200
    out = c.post("/api/auth/logout", data={"refresh_token": t["refresh_token"]})
    assert out.status_code == 204
    r = c.get("/api/user/me", headers=bearer(t["access_token"]))
    assert r.status_code == 401 and r.json()["detail"]["error"] == "session_ended"
    assert c.get("/api/user/me", headers=bearer(keep["access_token"])).status_code == 200


def test_web_sign_out_ends_the_access_cookie(make_app: Any, library: Path, tmp_path: Path) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    _web_login(c)
    access = c.cookies.get("lectern_access")
    assert access and c.get("/api/user/me").status_code == 200
    assert c.post("/logout", headers=ORIGIN, follow_redirects=False).status_code == 303
    # the browser forgot the cookies; someone who copied the access cookie has not
    c.cookies.clear()
    c.cookies.set("lectern_access", access)
    assert c.get("/api/user/me").status_code == 401
    assert c.get("/me", follow_redirects=False).status_code == 303  # to the sign-in page


def test_logout_reaches_the_other_workers_of_the_host(
    make_app: Any, library: Path, tmp_path: Path
) -> None:
    """Two workers: one DATA_DIR (the epoch file), one database, separate caches."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    w1 = make_app(library, url, data_dir=tmp_path / "data")
    w2 = make_app(library, url, data_dir=tmp_path / "data")
    t = login(w1)
    for w in (w1, w2, w2):
        assert w.get("/api/user/me", headers=bearer(t["access_token"])).status_code == 200
    w1.post("/api/auth/logout", data={"refresh_token": t["refresh_token"]})
    assert w2.get("/api/user/me", headers=bearer(t["access_token"])).status_code == 401


def test_a_replayed_refresh_token_ends_the_access_tokens_too(make_app: Any, db_url: str) -> None:
    c = make_app(None, db_url, refresh_grace=0)
    t0 = login(c)
    t1 = c.post("/api/auth/refresh", data={"refresh_token": t0["refresh_token"]}).json()
    assert c.get("/api/user/me", headers=bearer(t1["access_token"])).status_code == 200
    stolen = c.post("/api/auth/refresh", data={"refresh_token": t0["refresh_token"]})
    assert stolen.status_code == 401 and stolen.json()["detail"]["error"] == "refresh_reused"
    assert c.get("/api/user/me", headers=bearer(t1["access_token"])).status_code == 401


# ------------------------------------------------------------------ refresh races
def test_refresh_race_gives_every_request_the_same_successor(make_app: Any, db_url: str) -> None:
    """Six threads present one refresh token at once (tabs whose access cookie expired
    together): all succeed with the same new refresh token, which then works; the old
    one presented after the grace window is a replay and ends the family."""
    c = make_app(None, db_url, refresh_grace=2)
    acc = c.app.state.accounts
    t = login(c)
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def one() -> None:
        barrier.wait()
        try:
            results.append(acc.refresh(t["refresh_token"])[0])
        except Exception as e:  # collected and asserted below
            results.append(e)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    assert len({r.refresh for r in results}) == 1, "each request got its own successor"
    successor = results[0].refresh
    for r in results:
        assert c.get("/api/user/me", headers=bearer(r.access)).status_code == 200
    time.sleep(2.2)
    late = c.post("/api/auth/refresh", data={"refresh_token": t["refresh_token"]})
    assert late.status_code == 401 and late.json()["detail"]["error"] == "refresh_reused"
    assert c.post("/api/auth/refresh", data={"refresh_token": successor}).status_code == 401


@pytest.fixture(scope="module")
def server(
    built_library: tuple[Path, list[Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`python -m lectern_app` with two workers, as the image runs it on a bigger host;
    one for the module (starting it is the slow part)."""
    tmp_path = tmp_path_factory.mktemp("server")
    library = tmp_path / "library"
    shutil.copytree(built_library[0], library)
    data = tmp_path / "server-data"
    (server,) = start_replicas(
        {
            "CALIBRE_LIBRARY_PATH": str(library),
            "DATA_DIR": str(data),
            "WEB_CONCURRENCY": "2",
            "ADMIN_USERNAME": "admin",
            "ADMIN_PASSWORD": PASSWORD,
            "REFRESH_GRACE_SECONDS": "2",
        }
    )
    yield server.base, data
    err = server.stop()
    assert "Traceback" not in err, err


def test_parallel_requests_with_an_expired_access_cookie_keep_the_session(
    server: tuple[str, Path],
) -> None:
    base, _data = server
    r = httpx.post(
        base + "/login",
        data={"username": "admin", "password": PASSWORD},
        headers={"origin": base},
    )
    assert r.status_code == 303, r.text
    refresh = r.cookies["lectern_refresh"]
    # the access cookie has expired: the browser sends only the refresh cookie, from 6 tabs
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(6)

    def tab() -> None:
        barrier.wait()
        answers.append(
            httpx.get(base + "/api/user/me", cookies={"lectern_refresh": refresh}, timeout=30)
        )

    threads = [threading.Thread(target=tab) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    renewed = {a.cookies["lectern_refresh"] for a in answers}
    assert len(renewed) == 1, "the tabs were handed different sessions"
    (new,) = renewed
    again = httpx.get(base + "/api/user/me", cookies={"lectern_refresh": new})
    assert again.status_code == 200  # the session lives on: nothing was revoked as reused


# ------------------------------------------------------------------ forms from this site
def _shelf_token(c: Any) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', c.get("/me").text)
    assert m, "the shelf's forms carry no CSRF token"
    return m.group(1)


FORM_POSTS: list[tuple[str, dict[str, Any]]] = [
    ("/me/favorites", {"book_id": 1}),
    ("/me/progress", {"book_id": 1, "percentage": 12}),
    ("/me/lists", {"name": "Summer"}),
    ("/me/lists/add", {"book_id": 2, "name": "Winter"}),
    ("/logout", {}),
]


@pytest.mark.parametrize("origin", [None, "null"])
def test_cookie_forms_without_an_origin_need_the_session_token(
    make_app: Any, library: Path, tmp_path: Path, origin: str | None
) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    _web_login(c)
    headers = {"origin": origin} if origin else {}
    for path, data in FORM_POSTS:
        r = c.post(path, data=data, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and r.json()["detail"]["error"] == "csrf_refused", path
        forged = c.post(
            path, data={**data, "csrf": "0" * 64}, headers=headers, follow_redirects=False
        )
        assert forged.status_code == 403, path
    api = c.get("/api/user/favorites").json()
    assert api == [] or all(f.get("book_id") != 1 for f in api)
    assert c.get("/api/user/lists").json() == []
    token = _shelf_token(c)
    for path, data in FORM_POSTS:
        r = c.post(path, data={**data, "csrf": token}, headers=headers, follow_redirects=False)
        assert r.status_code == 303, (path, r.text)
    assert {x["name"] for x in make_lists(c)} == {"Summer", "Winter"}


def make_lists(c: Any) -> list[dict[str, Any]]:
    """The lists, read with a fresh sign-in (the forms above signed the test out)."""
    _web_login(c)
    lists: list[dict[str, Any]] = c.get("/api/user/lists").json()
    return lists


def test_every_cookie_authenticated_write_refuses_a_foreign_or_missing_origin(
    make_app: Any, library: Path, tmp_path: Path
) -> None:
    """Every state-changing route of the API, not only the web forms: with the session
    cookie and no usable Origin (or another site's), nothing runs; the X-CSRF-Token
    header of the session passes; a Bearer token needs none of it."""
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    _web_login(c)
    token = _shelf_token(c)
    writes = [  # every published write; KOReader's routes take their own headers
        (path, method.upper())
        for path, ops in c.app.openapi()["paths"].items()
        for method in ops
        if method in ("post", "put", "patch", "delete")
        and not path.startswith(("/users/", "/syncs/"))
        and path != "/api/auth/login"  # acts on no session: answers in its body
    ]
    assert len(writes) >= 15, writes
    for path, method in writes:
        url = path.replace("{book_id}", "1").replace("{list_id}", "1")
        url = url.replace("{user_id}", "1").replace("{token_id}", "1")
        for headers in ({}, {"origin": "null"}, {"origin": "https://evil.example"}):
            r = c.request(method, url, headers=headers, json={})
            assert r.status_code == 403, (method, url, headers, r.status_code)
        passed = c.request(method, url, headers={"x-csrf-token": token}, json={})
        assert passed.status_code != 403 or passed.json()["detail"]["error"] != "csrf_refused"
        if path == "/api/auth/logout":  # it ended the session: sign in again
            _web_login(c)
            token = _shelf_token(c)
    # a header credential is not ambient: no Origin, no token, still fine
    b = admin_headers(c)
    c.cookies.clear()
    assert c.put("/api/user/favorites/1", headers=b).status_code == 204


def test_sign_in_form_without_an_origin_needs_its_nonce(
    make_app: Any, library: Path, tmp_path: Path
) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    creds = {"username": "admin", "password": PASSWORD}
    r = c.post("/login", data=creds, follow_redirects=False)
    assert r.status_code == 403  # a forged sign-in (into the attacker's account) is refused
    evil = c.post(
        "/login", data=creds, headers={"origin": "https://evil.example"}, follow_redirects=False
    )
    assert evil.status_code == 403
    page = c.get("/login")
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert m and c.cookies.get("lectern_csrf")
    ok = c.post("/login", data={**creds, "csrf": m.group(1)}, follow_redirects=False)
    assert ok.status_code == 303 and c.get("/api/user/me").status_code == 200


# ------------------------------------------------------------------ password resets
def test_password_reset_revokes_api_tokens_unless_kept(make_app: Any, db_url: str) -> None:
    c = make_app(None, db_url)
    uid = create_user(c, "reader")
    reader = bearer(login(c, "reader")["access_token"])
    tokens = [c.post("/api/user/tokens", json={"name": n}, headers=reader).json() for n in "ab"]
    for t in tokens:
        assert c.get("/api/user/me", headers=bearer(t["token"])).status_code == 200
    admin = admin_headers(c)
    r = c.post(
        f"/api/admin/users/{uid}/password", json={"password": "new pass 1234"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["revoked_api_tokens"] == 2
    for t in tokens:
        assert c.get("/api/user/me", headers=bearer(t["token"])).status_code == 401
    assert c.get("/api/user/me", headers=reader).status_code == 401  # sessions ended too

    kept = c.post(
        "/api/user/tokens",
        json={"name": "c"},
        headers=bearer(login(c, "reader", "new pass 1234")["access_token"]),
    ).json()
    r = c.post(
        f"/api/admin/users/{uid}/password",
        json={"password": "newer pass 1234", "keep_tokens": True},
        headers=admin,
    )
    assert r.status_code == 200 and r.json()["revoked_api_tokens"] == 0
    assert c.get("/api/user/me", headers=bearer(kept["token"])).status_code == 200


def test_cli_reset_says_what_it_revoked(make_app: Any, library: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}", data_dir=data)
    create_user(c, "reader")
    reader = bearer(login(c, "reader")["access_token"])
    tok = c.post("/api/user/tokens", json={"name": "opds"}, headers=reader).json()["token"]
    env = {**os.environ, "DATA_DIR": str(data), "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}

    def cli(*args: str) -> str:
        p = subprocess.run(
            [sys.executable, "-m", "lectern_app", "admin", *args],
            input="another pass 1234\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        return p.stdout

    out = cli("reset-password", "reader", "--password-stdin", "--keep-tokens")
    assert "every session ended" in out and "API tokens are kept" in out
    assert c.get("/api/user/me", headers=bearer(tok)).status_code == 200
    out = cli("reset-password", "reader", "--password-stdin")
    assert "1 API token revoked" in out
    assert c.get("/api/user/me", headers=bearer(tok)).status_code == 401


# ------------------------------------------------------------------ sign-in limits
def test_successful_sign_ins_do_not_count_against_the_client(make_app: Any, tmp_path: Path) -> None:
    """A household behind one address signs in all day; only failures are counted."""
    c = make_app(None, f"sqlite:///{tmp_path / 'a.db'}", login_max_per_ip=5)
    for _ in range(8):
        login(c)
    bad = c.post("/api/auth/login", data={"username": "admin", "password": "wrong-pass"})
    assert bad.status_code == 401
    for i in range(4):  # 5 failures in all, over several accounts: the 6th is refused
        c.post("/api/auth/login", data={"username": f"nobody{i}", "password": "x" * 8})
    r = c.post("/api/auth/login", data={"username": "admin", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


# ------------------------------------------------------------------ DATA_DIR is private
def _loose(root: Path) -> list[str]:
    found = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if not p.is_symlink() and mode & 0o077:
            found.append(f"{p.relative_to(root)} {mode:o}")
    return found


def test_everything_under_data_dir_is_private_from_the_first_start(
    server: tuple[str, Path],
) -> None:
    base, data = server
    for _ in range(3):  # writes: the WAL now holds password hashes and refresh tokens
        assert httpx.post(
            base + "/api/auth/login", data={"username": "admin", "password": PASSWORD}
        ).is_success
    httpx.get(base + "/api/books/1/cover?size=thumbnail")  # a generated thumbnail
    names = {p.name for p in data.iterdir()}
    assert {"lectern.db", "lectern.db-wal", "lectern.db-shm", "secret_key"} <= names, names
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert _loose(data) == []


def test_an_existing_open_data_dir_is_made_private(make_app: Any, tmp_path: Path) -> None:
    data = tmp_path / "old-data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    for name in ("lectern.db-wal", "lectern.db-shm"):  # left 0644 by an older release
        (data / name).touch()
        (data / name).chmod(0o644)
    c = make_app(None, f"sqlite:///{data / 'lectern.db'}", data_dir=data)
    login(c)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert [x for x in _loose(data) if x.startswith("lectern.db")] == []


# ------------------------------------------------------------------ who is the proxy
ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def test_forwarded_allow_ips_resolves_the_gateway_and_refuses_typos(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(ROUTES)
    assert default_gateway(table) == "192.168.0.1"
    assert trusted_proxies("gateway, 10.0.0.0/8", table) == "192.168.0.1,10.0.0.0/8"
    assert trusted_proxies("", table) == ""
    with pytest.raises(ValueError, match="not an IP address"):
        trusted_proxies("10.0.0.l", table)
    table.write_text(ROUTES.splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="no default route"):
        trusted_proxies("gateway", table)


# ------------------------------------------------------------------ review findings
def test_a_worker_that_bumps_the_epoch_still_sees_another_workers_change(
    tmp_path: Path,
) -> None:
    epoch = tmp_path / "auth-epoch"
    w1 = authcache.AuthCache(True, 300, epoch_file=epoch)
    w2 = authcache.AuthCache(True, 300, epoch_file=epoch)
    w1.put_family("F", 1)
    assert w1.family_live("F")
    w2.bump_epoch()  # another worker: a sign-out
    w1.bump_epoch()  # this worker changes some other user before it looks again
    assert not w1.family_live("F")


def test_refresh_grace_follows_the_chain_to_the_live_token(make_app: Any, db_url: str) -> None:
    """A tab's duplicate arrives after the winner already refreshed again: it gets the
    newest token, not a spent one that would end the session at the next refresh."""
    c = make_app(None, db_url, refresh_grace=30)
    t0 = login(c)
    t1 = c.post("/api/auth/refresh", data={"refresh_token": t0["refresh_token"]}).json()
    t2 = c.post("/api/auth/refresh", data={"refresh_token": t1["refresh_token"]}).json()
    late = c.post("/api/auth/refresh", data={"refresh_token": t0["refresh_token"]})
    assert late.status_code == 200 and late.json()["refresh_token"] == t2["refresh_token"]
    nxt = c.post("/api/auth/refresh", data={"refresh_token": t2["refresh_token"]})
    assert nxt.status_code == 200


def test_dead_tokens_do_not_clear_every_cache(make_app: Any, tmp_path: Path) -> None:
    """Signing out an ended session, or presenting its refresh token, changes nothing:
    no cache is cleared (each clear costs every OPDS reader a password hash)."""
    c = make_app(None, f"sqlite:///{tmp_path / 'a.db'}", refresh_grace=0)
    t = login(c)
    calls: list[int] = []
    authcache.on_user_changed.append(calls.append)
    try:
        c.post("/api/auth/logout", data={"refresh_token": t["refresh_token"]})
        assert calls == [1]
        for _ in range(3):
            c.post("/api/auth/logout", data={"refresh_token": t["refresh_token"]})
            r = c.post("/api/auth/refresh", data={"refresh_token": t["refresh_token"]})
            assert r.status_code == 401
        assert calls == [1]
    finally:
        authcache.on_user_changed.remove(calls.append)


def test_a_token_that_is_not_ascii_is_refused_not_a_500(
    make_app: Any, library: Path, tmp_path: Path
) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    c.cookies.set("lectern_csrf", "A" * 24)
    r = c.post("/login", data={"username": "admin", "password": PASSWORD, "csrf": "é"})
    assert r.status_code == 403
    _web_login(c)
    r = c.post(
        "/api/user/lists", json={"name": "x"}, headers={"x-csrf-token": "é\u00ff".encode("latin-1")}
    )
    assert r.status_code == 403


def test_signed_in_sign_in_form_without_origin(
    make_app: Any, library: Path, tmp_path: Path
) -> None:
    c = make_app(library, f"sqlite:///{tmp_path / 'a.db'}")
    _web_login(c)
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', c.get("/login").text)
    assert m
    r = c.post(
        "/login",
        data={"username": "admin", "password": PASSWORD, "csrf": m.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303
