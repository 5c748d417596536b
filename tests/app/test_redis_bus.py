"""REDIS_URL: two real app processes share one real redis-server.

A calibredb change is announced on the bus by the replica that noticed it and picked up
by the other before anyone asks it; a response one replica rendered is served by the
other from Redis; a user disabled on one replica is refused by both within a second.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lectern_app.accounts.config import AccountSettings
from lectern_app.accounts.service import Accounts
from lectern_app.demo import run_calibredb

from .conftest import new_epub
from .replica_helpers import Replica, free_port, metric, redis_server, start_replicas


@pytest.fixture(scope="module")
def pair(
    built_library: tuple[Path, list[Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica, Path]]:
    """Replica A watches the library; B does not (a mount without inotify, e.g. NFS).

    One pair for the module: starting Python app processes is the slow part."""
    tmp = tmp_path_factory.mktemp("replicas")
    library = tmp / "lib"
    shutil.copytree(built_library[0], library)
    with redis_server(tmp / "redis") as redis_url:
        (tmp / "shared").mkdir()
        common = {
            "CALIBRE_LIBRARY_PATH": str(library),
            "REDIS_URL": redis_url,
            # as on two hosts: one accounts database and secret, but separate DATA_DIRs
            # (so nothing but Redis can tell B about a change made through A)
            "DATABASE_URL": f"sqlite:///{tmp / 'shared' / 'lectern.db'}",
            "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789abcdef",
            "ADMIN_USERNAME": "root",
            "ADMIN_PASSWORD": "root-pass-1234",
        }
        # migrate the shared database and create the admin once, before two processes
        # start (two first starts racing on one fresh SQLite file is a different test)
        acc = Accounts(
            AccountSettings(
                database_url=common["DATABASE_URL"],
                secret_key=common["SECRET_KEY"],
                admin_username="root",
                admin_password="root-pass-1234",
            ),
            tmp / "shared",
        )
        acc.start()
        acc.close()
        a, b = start_replicas(
            {**common, "WATCH_CALIBRE_DB": "true", "DATA_DIR": str(tmp / "data-a")},
            {**common, "WATCH_CALIBRE_DB": "false", "DATA_DIR": str(tmp / "data-b")},
        )
        errors: list[str] = []
        try:
            for r in (a, b):
                deadline = time.monotonic() + 5
                while not r.client.get("/api/health").json()["redis"]["bus"]["connected"]:
                    assert time.monotonic() < deadline, "bus never connected"
                    time.sleep(0.02)
            yield a, b, library
        finally:
            errors = [a.stop(), b.stop()]
    for err in errors:
        assert "Traceback" not in err, err


def _total(r: Replica) -> int:
    total: int = r.client.get("/api/books").json()["total"]
    return total


def test_calibredb_add_reaches_both_replicas_within_a_second(
    pair: tuple[Replica, Replica, Path], tmp_path: Path
) -> None:
    a, b, library = pair
    before = _total(a)
    assert _total(b) == before
    b_health = b.client.get("/api/health").json()
    assert b_health["status"] == "healthy" and b_health["cache"] is True
    reloads_before = b_health["redis"]["bus"]["library_reloads"]

    run_calibredb(library, "add", str(new_epub(tmp_path, "Pubsub Parable")))
    t0 = time.monotonic()
    # A (watcher) reloads and announces; B is not asked anything meanwhile
    while _total(a) != before + 1:
        assert time.monotonic() - t0 < 1.0, "replica A did not see the new book in 1 s"
        time.sleep(0.01)
    deadline = t0 + 1.0
    while time.monotonic() < deadline:
        h = b.client.get("/api/health").json()  # health does not serve the book list
        if h["redis"]["bus"]["library_reloads"] > reloads_before:
            break
        time.sleep(0.01)
    seen = time.monotonic() - t0
    assert h["redis"]["bus"]["library_reloads"] > reloads_before, (
        "replica B did not reload on the bus message within 1 s"
    )
    assert h["books"] == before + 1
    # B's listing: rendered by A for the same content, served from Redis
    hits0 = metric(b.client.get("/metrics").text, 'lectern_cache_hits_total{cache="shared"}')
    assert _total(b) == before + 1
    hits1 = metric(b.client.get("/metrics").text, 'lectern_cache_hits_total{cache="shared"}')
    assert hits1 == hits0 + 1
    print(f"replica B reloaded {seen * 1000:.0f} ms after calibredb exited")


def test_shared_response_is_identical_and_keyed_by_content(
    pair: tuple[Replica, Replica, Path],
) -> None:
    a, b, _lib = pair
    url = "/api/books?q=zz-not-a-title&sort=title"
    ra = a.client.get(url)
    time.sleep(0.1)  # writes go through a background thread
    text = b.client.get("/metrics").text
    hits0 = metric(text, 'lectern_cache_hits_total{cache="shared"}')
    rb = b.client.get(url)
    hits1 = metric(b.client.get("/metrics").text, 'lectern_cache_hits_total{cache="shared"}')
    assert hits1 == hits0 + 1
    assert rb.content == ra.content and rb.headers["etag"] == ra.headers["etag"]
    assert rb.status_code == 200 and rb.headers["content-type"] == ra.headers["content-type"]


def _login(r: Replica, user: str, password: str) -> dict[str, str]:
    resp = r.client.post("/api/auth/login", data={"username": user, "password": password})
    assert resp.status_code == 200, resp.text
    return {"authorization": f"Bearer {resp.json()['access_token']}"}


def _refused_by_both(
    a: Replica, b: Replica, headers: dict[str, str], statuses: tuple[int, ...]
) -> dict[str, float]:
    """Seconds until each replica answered /api/user/me with one of `statuses`; asserts
    both did within a second."""
    t0 = time.monotonic()
    refused: dict[str, float] = {}
    while len(refused) < 2 and time.monotonic() - t0 < 1.0:
        for name, r in (("a", a), ("b", b)):
            if name in refused:
                continue
            if r.client.get("/api/user/me", headers=headers).status_code in statuses:
                refused[name] = time.monotonic() - t0
        time.sleep(0.005)
    assert set(refused) == {"a", "b"}, f"still accepted after 1 s by {set('ab') - set(refused)}"
    return refused


def test_disabled_user_refused_by_both_replicas_within_a_second(
    pair: tuple[Replica, Replica, Path],
) -> None:
    a, b, _lib = pair
    admin = _login(a, "root", "root-pass-1234")
    created = a.client.post(
        "/api/admin/users",
        json={"username": "reader1", "password": "reader-pass-1234", "role": "user"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    tok = _login(b, "reader1", "reader-pass-1234")
    basic = httpx.BasicAuth("reader1", "reader-pass-1234")
    for r in (a, b):  # both replicas now hold the user (and the OPDS credential) in cache
        for _ in range(2):
            assert r.client.get("/api/user/me", headers=tok).status_code == 200
            assert r.client.get("/opds/", auth=basic).status_code == 200

    patched = a.client.patch(f"/api/admin/users/{uid}", json={"disabled": True}, headers=admin)
    assert patched.status_code == 200, patched.text
    refused = _refused_by_both(a, b, tok, (401, 403))
    for r in (a, b):
        assert r.client.get("/opds/", auth=basic).status_code == 401
    print("disabled user refused after", {k: f"{v * 1000:.0f} ms" for k, v in refused.items()})


def test_signed_out_session_refused_by_both_replicas_within_a_second(
    pair: tuple[Replica, Replica, Path],
) -> None:
    """Signing out on one replica ends that sign-in's access token on the other too,
    not 30 minutes later when the token expires; another sign-in of the user lives on."""
    a, b, _lib = pair
    session = b.client.post(
        "/api/auth/login", data={"username": "root", "password": "root-pass-1234"}
    ).json()
    other = _login(a, "root", "root-pass-1234")
    tok = {"Authorization": f"Bearer {session['access_token']}"}
    for r in (a, b):  # both replicas have verified the token and hold it in cache
        for _ in range(2):
            assert r.client.get("/api/user/me", headers=tok).status_code == 200
    out = a.client.post("/api/auth/logout", data={"refresh_token": session["refresh_token"]})
    assert out.status_code == 204
    refused = _refused_by_both(a, b, tok, (401,))
    for r in (a, b):
        assert r.client.get("/api/user/me", headers=other).status_code == 200
    print("signed-out session refused after", {k: f"{v * 1000:.0f} ms" for k, v in refused.items()})


def test_redis_outage_degrades_then_recovers(
    library: Path, client_for: Any, tmp_path: Path
) -> None:
    """In process (TestClient): Redis going away never breaks serving; the bus comes back."""
    port = free_port()

    def health(c: Any, want: str) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while True:
            h: dict[str, Any] = c.get("/api/health").json()
            if h["status"] == want or time.monotonic() > deadline:
                return h
            time.sleep(0.05)

    with redis_server(tmp_path / "r1", port) as url:
        c = client_for(library, redis_url=url)
        h = health(c, "healthy")
        assert h["status"] == "healthy" and h["redis"]["bus"]["connected"], h
        total = c.get("/api/books").json()["total"]
    h = health(c, "degraded")
    assert h["status"] == "degraded" and h["cache"] is False, h
    assert h["redis"]["bus"]["connected"] is False
    assert c.get("/api/books", params={"sort": "title"}).json()["total"] == total
    with redis_server(tmp_path / "r2", port):
        h = health(c, "healthy")
        assert h["status"] == "healthy" and h["redis"]["bus"]["connected"], h
        assert c.get("/api/books", params={"page": 2}).status_code == 200
