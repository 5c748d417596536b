"""USE_S3_COVERS against moto's S3 server over real HTTP on loopback.

The upload command puts covers and thumbnails into the bucket (only changed ones), the
cover endpoint redirects to a presigned URL (or the CDN) that really returns the cover,
a cover changed since the upload is served locally, and when S3 stops answering covers
are served from local disk and /api/health says so.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import httpx
import pytest
from lectern_app.config import Settings
from lectern_app.demo import make_cover_jpeg, run_calibredb
from lectern_app.storage.upload import main as covers_main
from lectern_app.storage.upload import upload_covers
from moto.server import ThreadedMotoServer
from PIL import Image

from .conftest import make_settings
from .replica_helpers import free_port, metric

BUCKET = "calibre-covers"
CREDS = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_REGION": "us-east-1",
}


def _moto() -> tuple[ThreadedMotoServer, str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    server, url = _moto()
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def _settings(library: Path, data: Path, endpoint: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "use_s3_covers": True,
        "s3_bucket": BUCKET,
        "s3_endpoint_url": endpoint,
        "s3_region": "us-east-1",
        "s3_presign_expiry": 600,
        "s3_manifest_refresh": 0.2,
    }
    base.update(kw)
    return make_settings(library, data, **base)


def _wait_covers(c: Any, ok: bool, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        h: dict[str, Any] = c.get("/api/health").json()
        if h["storage"]["covers"]["ok"] is ok or time.monotonic() > deadline:
            return h
        time.sleep(0.05)


def _objects(endpoint: str) -> dict[str, str]:
    cl = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    out = cl.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: o["ETag"].strip('"') for o in out}


def _cover_file(library: Path, book_id: int) -> Path:
    return next(library.glob(f"*/*({book_id})/cover.jpg"))


def _with_cover(listing: list[dict[str, Any]]) -> list[int]:
    return sorted(b["id"] for b in listing if b.get("cover"))


def test_upload_command_and_presigned_redirects(
    s3: str,
    library: Path,
    listing: list[dict[str, Any]],
    tmp_path: Path,
    client_for: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    covered = _with_cover(listing)
    assert len(covered) >= 5
    # the command as an operator runs it (`python -m lectern_app covers upload`; its
    # entry point is called in process: a Python start costs seconds on this box)
    for k, v in {
        "CALIBRE_LIBRARY_PATH": str(library),
        "DATA_DIR": str(tmp_path / "cli-data"),
        "S3_BUCKET_NAME": BUCKET,
        "S3_ENDPOINT_URL": s3,
        "USE_S3_COVERS": "true",
    }.items():
        monkeypatch.setenv(k, v)
    assert covers_main(["upload"]) == 0
    out = capsys.readouterr()
    n = len(covered)
    assert f"uploaded {n} covers and {n} thumbnails" in out.out, out
    assert CREDS["AWS_SECRET_ACCESS_KEY"] not in out.out + out.err
    objects = _objects(s3)
    assert {f"covers/{i}.jpg" for i in covered} <= set(objects)
    assert {f"covers/thumbs/{i}-w240.jpg" for i in covered} <= set(objects)
    assert "covers/manifest.json" in objects
    first = covered[0]
    local = _cover_file(library, first)
    assert objects[f"covers/{first}.jpg"] == hashlib.md5(local.read_bytes()).hexdigest()

    settings = _settings(library, tmp_path / "cli-data", s3)
    again = upload_covers(settings)  # nothing changed: nothing sent
    assert (again.uploaded, again.thumbs_uploaded, again.unchanged) == (0, 0, n)

    c = client_for(library, **{k: getattr(settings, k) for k in _s3_fields(settings)})
    h = _wait_covers(c, True)
    assert h["storage"]["covers"]["ok"] is True and h["storage"]["covers"]["objects"] == n
    assert h["status"] == "healthy"

    r = c.get(f"/api/files/cover/{first}", follow_redirects=False)
    assert r.status_code == 302
    loc = urlparse(r.headers["location"])
    assert loc.path == f"/{BUCKET}/covers/{first}.jpg"
    assert parse_qs(loc.query)["X-Amz-Expires"] == ["600"]
    assert "X-Amz-Signature" in parse_qs(loc.query)
    again = c.get(f"/api/files/cover/{first}", follow_redirects=False)  # from memory
    assert again.status_code == 302 and again.headers["location"] == r.headers["location"]
    got = httpx.get(r.headers["location"])  # the presigned URL really serves the cover
    assert got.status_code == 200 and got.content == local.read_bytes()

    t = c.get(f"/api/files/cover/{first}", params={"size": "thumbnail"}, follow_redirects=False)
    assert t.status_code == 302 and f"/covers/thumbs/{first}-w240.jpg" in t.headers["location"]
    with Image.open(io.BytesIO(httpx.get(t.headers["location"]).content)) as im:
        assert im.width == 240
    no_cover = next(b["id"] for b in listing if not b.get("cover"))
    assert c.get(f"/api/files/cover/{no_cover}", follow_redirects=False).status_code == 404

    # a cover changed in calibre: served locally (the bucket holds the old one) until uploaded
    img = tmp_path / "new-cover.jpg"
    img.write_bytes(make_cover_jpeg("A brand new cover", (200, 30, 30)))
    run_calibredb(library, "set_metadata", str(first), "--field", f"cover:{img}")
    r = c.get(f"/api/files/cover/{first}", follow_redirects=False)
    assert r.status_code == 200 and r.content == local.read_bytes()
    assert r.headers["content-type"] == "image/jpeg"
    changed = upload_covers(settings)
    assert (changed.uploaded, changed.thumbs_uploaded) == (1, 1)
    c.app.state.services.storage.covers.recheck()
    deadline = time.monotonic() + 5
    while (r := c.get(f"/api/files/cover/{first}", follow_redirects=False)).status_code != 302:
        assert time.monotonic() < deadline, "no redirect after the upload"
        time.sleep(0.05)
    assert httpx.get(r.headers["location"]).content == local.read_bytes()

    # a removed book's objects are deleted
    gone = covered[1]
    run_calibredb(library, "remove", str(gone))
    removed = upload_covers(settings)
    assert removed.deleted == 2 and removed.uploaded == 0
    assert f"covers/{gone}.jpg" not in _objects(s3)
    m = c.get("/metrics").text
    assert metric(m, 'lectern_cover_redirects_total{target="s3"}') >= 3


def _s3_fields(settings: Settings) -> list[str]:
    return [f for f in settings.__dataclass_fields__ if f.startswith(("s3_", "use_s3", "cdn"))]


def test_cdn_domain_redirect(
    s3: str, library: Path, listing: list[dict[str, Any]], tmp_path: Path, client_for: Any
) -> None:
    settings = _settings(library, tmp_path / "data", s3, cdn_domain="covers.example.org")
    upload_covers(settings)
    c = client_for(library, **{k: getattr(settings, k) for k in _s3_fields(settings)})
    _wait_covers(c, True)
    first = _with_cover(listing)[0]
    r = c.get(f"/api/files/cover/{first}", follow_redirects=False)
    assert r.status_code == 302
    md5 = hashlib.md5(_cover_file(library, first).read_bytes()).hexdigest()
    assert r.headers["location"] == f"https://covers.example.org/covers/{first}.jpg?v={md5[:12]}"


def test_s3_down_serves_local_covers_and_health_says_so(
    monkeypatch: pytest.MonkeyPatch,
    library: Path,
    listing: list[dict[str, Any]],
    tmp_path: Path,
    client_for: Any,
) -> None:
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    server, url = _moto()
    try:
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        settings = _settings(library, tmp_path / "data", url)
        upload_covers(settings)
        c = client_for(library, **{k: getattr(settings, k) for k in _s3_fields(settings)})
        _wait_covers(c, True)
        first = _with_cover(listing)[0]
        assert c.get(f"/api/files/cover/{first}", follow_redirects=False).status_code == 302
    finally:
        server.stop()
    h = _wait_covers(c, False)
    covers = h["storage"]["covers"]
    assert covers["ok"] is False and covers["serving"] == "local (fallback)", covers
    assert covers["error"] and "testing-secret" not in str(h)
    assert h["status"] == "degraded"
    r = c.get(f"/api/files/cover/{first}", follow_redirects=False)
    assert r.status_code == 200 and r.content == _cover_file(library, first).read_bytes()
    m = c.get("/metrics").text
    assert metric(m, 'lectern_storage_fallbacks_total{store="s3_covers"}') >= 1
    assert metric(m, 'lectern_storage_up{store="s3_covers"}') == 0
