"""A local HTTP server speaking the parts of the Google Drive v3 API the app uses.

Google cannot be reached from here, so this stands in for it over real HTTP on loopback:
- POST /token: the OAuth2 JWT-bearer grant of a service account; the assertion's RS256
  signature is verified with the test key's public half, then a bearer token is issued.
- GET /drive/v3/files?q=...: `'<id>' in parents and name = '<name>' and mimeType = / !=
  '<folder type>' and trashed = false` (the query language subset the app sends).
- GET /drive/v3/files/<id>?alt=media with an optional `Range: bytes=a-b` (206).
Every Drive call must carry the issued bearer token (401 otherwise). A directory on disk
is the Drive: its root is the folder FOLDER_ID, ids are stable hashes of paths.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt

FOLDER = "application/vnd.google-apps.folder"
FOLDER_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz"
_Q_PARENT = re.compile(r"'((?:[^'\\]|\\.)*)' in parents")
_Q_NAME = re.compile(r"name = '((?:[^'\\]|\\.)*)'")
_Q_MIME = re.compile(r"mimeType (=|!=) '([^']*)'")


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


class FakeDrive:
    def __init__(self, root: Path, public_key_pem: bytes, client_email: str) -> None:
        self.root = root
        self.public_key = public_key_pem
        self.client_email = client_email
        self.token = "fake-access-" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:12]
        self.calls: list[tuple[str, str, str | None]] = []  # (kind, detail, range)
        self.fail_with: int | None = None  # answer every Drive call with this status
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeDrive:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ the drive
    def file_id(self, rel: str) -> str:
        if rel in ("", "."):
            return FOLDER_ID
        return "f" + hashlib.sha1(rel.encode()).hexdigest()[:20]

    def _by_id(self, fid: str) -> Path | None:
        if fid == FOLDER_ID:
            return self.root
        for p in self.root.rglob("*"):
            if self.file_id(str(p.relative_to(self.root))) == fid:
                return p
        return None

    def _meta(self, p: Path) -> dict[str, Any]:
        rel = str(p.relative_to(self.root))
        m: dict[str, Any] = {"id": self.file_id(rel), "name": p.name}
        if p.is_dir():
            m["mimeType"] = FOLDER
        else:
            data = p.read_bytes()
            m.update(
                mimeType="application/octet-stream",
                size=str(len(data)),
                md5Checksum=hashlib.md5(data).hexdigest(),
                modifiedTime="2024-01-01T00:00:00.000Z",
            )
        return m

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        drive = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                if urlparse(self.path).path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                assertion = form.get("assertion", [""])[0]
                try:
                    claims = jwt.decode(
                        assertion,
                        drive.public_key,
                        algorithms=["RS256"],
                        audience="https://oauth2.googleapis.com/token",  # as google-auth signs
                    )
                except jwt.PyJWTError as e:
                    self._json(400, {"error": "invalid_grant", "error_description": str(e)})
                    return
                grant = form.get("grant_type", [""])[0]
                if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or (
                    claims.get("iss") != drive.client_email
                ):
                    self._json(400, {"error": "invalid_grant"})
                    return
                drive.calls.append(("token", str(claims.get("scope")), None))
                self._json(
                    200, {"access_token": drive.token, "expires_in": 3600, "token_type": "Bearer"}
                )

            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                if self.headers.get("authorization") != f"Bearer {drive.token}":
                    self._json(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
                    return
                if drive.fail_with is not None:
                    self._json(drive.fail_with, {"error": {"code": drive.fail_with}})
                    return
                if url.path == "/drive/v3/files":
                    self._list(params.get("q", ""))
                    return
                m = re.fullmatch(r"/drive/v3/files/([A-Za-z0-9_-]+)", url.path)
                if m and params.get("alt") == "media":
                    self._media(m.group(1))
                    return
                self._json(404, {"error": {"code": 404, "message": "not found"}})

            def _list(self, q: str) -> None:
                drive.calls.append(("list", q, None))
                parent = _Q_PARENT.search(q)
                name = _Q_NAME.search(q)
                mime = _Q_MIME.search(q)
                if parent is None or "trashed = false" not in q:
                    self._json(400, {"error": {"code": 400, "message": "unsupported query"}})
                    return
                folder = drive._by_id(_unescape(parent.group(1)))
                items = []
                if folder is not None and folder.is_dir():
                    for p in sorted(folder.iterdir()):
                        if name is not None and p.name != _unescape(name.group(1)):
                            continue
                        if mime is not None:
                            is_folder = p.is_dir()
                            wants_folder = mime.group(2) == FOLDER
                            if (mime.group(1) == "=") != (is_folder == wants_folder):
                                continue
                        items.append(drive._meta(p))
                self._json(200, {"files": items})

            def _media(self, fid: str) -> None:
                p = drive._by_id(fid)
                rng = self.headers.get("range")
                drive.calls.append(("media", fid, rng))
                if p is None or not p.is_file():
                    self._json(404, {"error": {"code": 404, "message": "File not found"}})
                    return
                data = p.read_bytes()
                code = 200
                if rng:
                    m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
                    assert m, rng
                    start = int(m.group(1))
                    end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
                    data = data[start : end + 1]
                    code = 206
                self.send_response(code)
                self.send_header("content-type", "application/octet-stream")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
