"""Fixtures for the image tests: one build + push per session into a throwaway registry.

images/build.sh reuses per-arch images whose inputs (context files, base image, build args)
did not change, and the legacy builder's layer cache makes a rebuild after an unrelated
commit cheap, so the slow arm64 build under qemu runs only when the app or lock changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REG_PORT = int(os.environ.get("IMAGE_TEST_REGISTRY_PORT", "5055"))
REGISTRY_HOST = f"127.0.0.1:{REG_PORT}"
REPO = "lectern/app"
REGISTRY = f"{REGISTRY_HOST}/{REPO}"
OUT = ROOT / ".cache" / "image-test"
REGISTRY_CONTAINER = "lectern-image-test-registry"


def sh(
    *args: str, check: bool = True, timeout: float = 600, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, text=True, capture_output=True, timeout=timeout, **kw)


def docker(*args: str, check: bool = True, timeout: float = 600) -> str:
    return sh("docker", *args, check=check, timeout=timeout).stdout.strip()


def http_json(
    url: str, accept: str | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, dict(r.headers), json.loads(body) if body and method == "GET" else None
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), None


def wait_health(url: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]
        except Exception as e:  # not up yet
            last = e
        time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout} s: {last}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    """A throwaway registry (Debian's docker-registry, the lab registry image) on loopback."""
    if sh("docker", "image", "inspect", "lectern/lab-registry:bookworm", check=False).returncode:
        sh(str(ROOT / "images" / "lab-images.sh"), timeout=1800)
    docker("rm", "-f", REGISTRY_CONTAINER, check=False)
    docker(
        "run",
        "-d",
        "--name",
        REGISTRY_CONTAINER,
        "--tmpfs",
        "/var/lib/docker-registry",
        "-p",
        f"{REGISTRY_HOST}:5000",
        "lectern/lab-registry:bookworm",
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if http_json(f"http://{REGISTRY_HOST}/v2/")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "test registry did not start"
        time.sleep(0.5)
    yield REGISTRY_HOST
    docker("rm", "-f", REGISTRY_CONTAINER, check=False)


@pytest.fixture(scope="session")
def build(registry: str) -> dict[str, Any]:
    """Run `images/build.sh` (what `make image` runs) against the test registry."""
    env = dict(os.environ, REGISTRY=REGISTRY, OUT=str(OUT))
    t0 = time.monotonic()
    p = subprocess.run(
        [str(ROOT / "images" / "build.sh")],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=3600,
    )
    assert p.returncode == 0, f"images/build.sh failed:\n{p.stderr[-4000:]}"
    rec: dict[str, Any] = json.loads((OUT / "last-build.json").read_text())
    rec["_log"] = p.stderr
    rec["_stdout"] = p.stdout
    rec["_seconds"] = time.monotonic() - t0
    return rec


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Calibre library made by calibredb (cached under .cache: calibredb is slow)."""
    from lectern_app.demo import build_demo_library

    dest = ROOT / ".cache" / "image-test-library" / "lib"
    for attempt in range(10):  # calibredb refuses to run beside another calibre program
        try:
            build_demo_library(dest, n=8)
            break
        except RuntimeError:
            if attempt == 9:
                raise
            time.sleep(3)
    os.chmod(dest, 0o755)
    return dest


@pytest.fixture()
def new_name() -> Iterator[Any]:
    names: list[str] = []

    def make() -> str:
        n = f"lectern-image-test-{uuid.uuid4().hex[:8]}"
        names.append(n)
        return n

    yield make
    for n in names:
        docker("rm", "-f", "-v", n, check=False)
