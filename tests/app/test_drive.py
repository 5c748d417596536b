"""USE_GOOGLE_DRIVE: books streamed from a Drive folder, metadata.db local.

google-api-python-client talks over real HTTP to tests/app/fake_drive.py (Google itself
cannot be reached): a service-account token grant with a real RS256-signed assertion,
files.list queries per path component, ranged files.get?alt=media downloads.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .fake_drive import FOLDER_ID, FakeDrive

EMAIL = "calibre-web-reader@lectern-test.iam.gserviceaccount.com"
KEEP = {"metadata.db", "metadata.db-wal", "metadata.db-shm", "cover.jpg", "metadata.opf"}


@pytest.fixture
def drive(library: Path, tmp_path: Path) -> Iterator[tuple[FakeDrive, Path, Path]]:
    """(fake drive, service account file, drive root): book files moved to 'Drive'."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    root = tmp_path / "drive"
    for f in library.rglob("*"):
        if f.is_file() and f.name not in KEEP and not f.name.startswith("metadata.db"):
            dest = root / f.relative_to(library)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(f), dest)  # gone locally: only metadata.db and covers stay
    fake = FakeDrive(root, public, EMAIL).start()
    sa = tmp_path / "google-credentials.json"
    sa.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "lectern-test",
                "private_key_id": "0123456789abcdef",
                "private_key": pem,
                "client_email": EMAIL,
                "client_id": "1234567890",
                "token_uri": f"{fake.url}/token",
            }
        )
    )
    yield fake, sa, root
    fake.stop()


def _client(client_for: Any, library: Path, fake: FakeDrive, sa: Path, chunk: int) -> Any:
    return client_for(
        library,
        use_google_drive=True,
        google_drive_credentials_path=str(sa),
        google_drive_folder_id=FOLDER_ID,
        google_drive_api_url=f"{fake.url}/drive/v3/",
        google_drive_chunk_size=chunk,
    )


def test_download_streams_from_drive_with_ranges(
    drive: tuple[FakeDrive, Path, Path], library: Path, client_for: Any
) -> None:
    fake, sa, root = drive
    c = _client(client_for, library, fake, sa, chunk=1000)
    book = c.get("/api/books/1").json()
    epub = next(iter(root.glob("*/*(1)/*.epub")))
    assert not (library / epub.relative_to(root)).exists()  # not on local disk
    data = epub.read_bytes()
    assert len(data) > 2500

    r = c.get("/api/files/download/1/epub")
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "application/epub+zip"
    assert "attachment" in r.headers["content-disposition"]
    assert book["title"].startswith("Ḱafka")  # non-ASCII path components resolved
    media = [x for x in fake.calls if x[0] == "media"]
    assert len(media) == -(-len(data) // 1000)  # streamed in 1000-byte ranged requests
    assert media[0][2] == "bytes=0-999"
    assert any(x[0] == "token" and "drive.readonly" in x[1] for x in fake.calls)

    lists = sum(1 for x in fake.calls if x[0] == "list")
    r = c.get("/api/files/download/1/epub", headers={"range": "bytes=10-99"})
    assert r.status_code == 206 and r.content == data[10:100]
    assert r.headers["content-range"] == f"bytes 10-99/{len(data)}"
    assert sum(1 for x in fake.calls if x[0] == "list") == lists  # ids were cached
    assert fake.calls[-1] == ("media", fake.calls[-1][1], "bytes=10-99")
    r = c.get("/api/files/download/1/epub", headers={"range": "bytes=-50"})
    assert r.status_code == 206 and r.content == data[-50:]
    r = c.get("/api/files/download/1/epub", headers={"range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    etag = c.get("/api/files/download/1/epub").headers["etag"]
    assert c.get("/api/files/download/1/epub", headers={"if-none-match": etag}).status_code == 304
    h = c.head("/api/files/download/1/epub")
    assert h.status_code == 200 and h.headers["content-length"] == str(len(data))

    # an apostrophe in a path component: the Drive query must be escaped
    zoe = next(p for p in root.glob("*/*") if "'" in p.name)
    zid = int(zoe.name.rsplit("(", 1)[1].rstrip(")"))
    zfile = next(zoe.glob("*.epub"))
    r = c.get(f"/api/files/download/{zid}/epub")
    assert r.status_code == 200 and r.content == zfile.read_bytes()


def test_missing_on_drive_and_drive_failures(
    drive: tuple[FakeDrive, Path, Path], library: Path, client_for: Any
) -> None:
    fake, sa, root = drive
    c = _client(client_for, library, fake, sa, chunk=4 << 20)
    # a file that is on neither: 404
    txt = next(iter(root.glob("*/*(3)/*.txt")))
    txt.unlink()
    r = c.get("/api/files/download/3/txt")
    assert r.status_code == 404 and "Google Drive" in r.json()["detail"]["message"]
    # a file kept locally too: local copy while Drive fails
    pdf = next(iter(root.glob("*/*(1)/*.pdf")))
    local_pdf = library / pdf.relative_to(root)
    shutil.copy(pdf, local_pdf)
    fake.fail_with = 500
    c.app.state.services.storage.drive.forget("", "")
    r = c.get("/api/files/download/1/pdf")
    assert r.status_code == 200 and r.content == local_pdf.read_bytes()
    r = c.get("/api/files/download/1/epub")  # Drive only: a clear 503
    assert r.status_code == 503
    assert r.json()["detail"]["error"] == "storage_unavailable"
    h = c.get("/api/health").json()
    assert h["status"] == "degraded"
    assert h["storage"]["books"]["ok"] is False and h["storage"]["books"]["error"]
    fake.fail_with = None
    assert c.get("/api/files/download/1/epub").status_code == 200
    assert c.get("/api/health").json()["storage"]["books"]["ok"] is True
