"""Fixtures for the accounts tests: a REAL PostgreSQL server (once per session), apps
with an accounts database on SQLite or PostgreSQL, and helpers to sign in.

PostgreSQL comes from Debian's `postgresql` package (scripts/ensure-host-packages.sh).
Root cannot run postgres, so as root the server runs as the `postgres` user (runuser) on
a private temp dir, listening on a unix socket only.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from lectern_app.accounts.config import AccountSettings
from lectern_app.main import create_app

from .conftest import make_settings

PASSWORD = "correct horse battery"


def _pg_bindir() -> Path | None:
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = sorted(
        (p for p in root.iterdir() if (p / "bin" / "initdb").exists()),
        key=lambda p: int(p.name) if p.name.isdigit() else 0,
    )
    return versions[-1] / "bin" if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, Any]]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL is required: run scripts/ensure-host-packages.sh (postgresql)")
    base = Path(tempfile.mkdtemp(prefix="lectern-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    port = _free_port()
    data = base / "data"

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)

    run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--no-sync",
    )
    opts = (
        f"-k {base} -c listen_addresses='' -p {port} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "log"),
        "-o",
        opts,
        "-w",
        "-t",
        "60",
        "start",
    )
    info = {"host": str(base), "port": port}
    try:
        yield info
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


def new_pg_database(server: dict[str, Any]) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(
        host=server["host"],
        port=server["port"],
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@/{name}?host={server['host']}&port={server['port']}"


@pytest.fixture
def pg_url(postgres_server: dict[str, Any]) -> str:
    return new_pg_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'accounts.db'}"
    return new_pg_database(request.getfixturevalue("postgres_server"))


def account_settings(url: str, **kw: Any) -> AccountSettings:
    values: dict[str, Any] = {
        "database_url": url,
        "secret_key": None,
        "admin_username": "admin",
        "admin_password": PASSWORD,
        "admin_email": "admin@example.org",
    }
    values.update(kw)
    return AccountSettings(**values)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """make_app(library, url, data_dir=None, **account_settings) -> entered TestClient."""
    clients: list[TestClient] = []

    def make(library: Path | None, url: str, data_dir: Path | None = None, **kw: Any) -> TestClient:
        data = data_dir or tmp_path / "data"
        app = create_app(make_settings(library, data), account_settings(url, **kw))
        c = TestClient(app, raise_server_exceptions=False)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def login(c: TestClient, username: str = "admin", password: str = PASSWORD) -> dict[str, Any]:
    r = c.post("/api/auth/login", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def admin_headers(c: TestClient) -> dict[str, str]:
    return bearer(login(c)["access_token"])


def create_user(c: TestClient, name: str, password: str = PASSWORD, role: str = "user") -> int:
    r = c.post(
        "/api/admin/users",
        json={"username": name, "password": password, "role": role},
        headers=admin_headers(c),
    )
    assert r.status_code == 201, r.text
    uid: int = r.json()["id"]
    return uid
