"""KOReader sync (kosync protocol, as the reference koreader-sync-server speaks it).

  POST /users/create            {"username", "password": md5(password)}  (KOSYNC_REGISTRATION)
  GET  /users/auth              headers x-auth-user, x-auth-key (md5 of the password)
  PUT  /syncs/progress          {"document", "progress", "percentage", "device", "device_id"}
  GET  /syncs/progress/{document}

Errors are {"code", "message"} with the reference server's codes. Users are Lectern's
users: the key is checked against an argon2id hash of md5(password) stored with the
password (never the md5 itself), and cached like HTTP Basic. Document ids are KOReader's
partial MD5 of a format file; each id maps back to its Calibre book, so a position synced
from KOReader is also the book's reading progress in the web UI and /api/user/progress.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from typing import Any

import anyio
from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.responses import JSONResponse

from ..covers import safe_join
from ..library import Library
from ..services import services
from . import security
from .authcache import Principal
from .models import KosyncProgress, User, utcnow
from .personal import save_progress
from .service import USERNAME, Accounts

router = APIRouter(tags=["kosync"])
KOSYNC_JSON = "application/json"
_KEY = re.compile(r"^[0-9a-fA-F]{32}$")
_DOC = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")

ERRORS = {
    "unauthorized": (401, 2001, "Unauthorized"),
    "user_exists": (402, 2002, "Username is already registered."),
    "invalid_fields": (403, 2003, "Invalid request"),
    "document_missing": (403, 2004, "Field 'document' not provided."),
    "registration_disabled": (402, 2005, "User registration is disabled."),
    "internal": (502, 2000, "Unknown server error."),
}


def _error(kind: str) -> JSONResponse:
    status, code, message = ERRORS[kind]
    return JSONResponse({"code": code, "message": message}, status_code=status)


def partial_md5(path: str | os.PathLike[str]) -> str:
    """KOReader's util.partialMD5: md5 over 1 KiB samples at offsets 0 and 1024 << 2i
    for i = 0..10 (LuaJIT's lshift(1024, -2) wraps to 0), stopping at end of file."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for i in range(-1, 11):
            fh.seek(0 if i < 0 else 1024 << (2 * i))
            sample = fh.read(1024)
            if not sample:
                break
            h.update(sample)
    return h.hexdigest()


class DocumentIndex:
    """partial MD5 of every format file -> book id, for the current library version.
    Digests are remembered per (path, size, mtime), so a new library version rehashes
    only the files that changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._digests: dict[str, tuple[int, int, str]] = {}
        self._version: tuple[str, int] | None = None
        self._map: dict[str, int] = {}
        self._by_book: dict[int, list[tuple[str, str]]] = {}

    def _build(self, lib: Library) -> None:
        key = (lib.library_id, lib.version)
        if self._version == key:
            return
        digests: dict[str, tuple[int, int, str]] = {}
        mapping: dict[str, int] = {}
        by_book: dict[int, list[tuple[str, str]]] = {}
        for b in lib.books.values():
            for f in b.formats:
                p = safe_join(lib.root, b.path, f.filename)
                if p is None:
                    continue
                sp = str(p)
                try:
                    st = os.stat(sp)
                except OSError:
                    continue
                old = self._digests.get(sp)
                if old is not None and old[0] == st.st_size and old[1] == st.st_mtime_ns:
                    d = old[2]
                else:
                    try:
                        d = partial_md5(sp)
                    except OSError:
                        continue
                digests[sp] = (st.st_size, st.st_mtime_ns, d)
                mapping.setdefault(d, b.id)
                by_book.setdefault(b.id, []).append((f.fmt, d))
        self._digests, self._map, self._by_book, self._version = (
            digests,
            mapping,
            by_book,
            key,
        )

    def book_of(self, lib: Library | None, document: str) -> int | None:
        if lib is None:
            return None
        with self._lock:
            self._build(lib)
            return self._map.get(document.lower())

    def documents_of(self, lib: Library | None, book_id: int) -> list[tuple[str, str]]:
        if lib is None:
            return []
        with self._lock:
            self._build(lib)
            return list(self._by_book.get(book_id, []))


def _accounts(request: Request) -> Accounts | None:
    acc: Accounts = request.app.state.accounts
    return acc if acc.started else None


def _index(request: Request) -> DocumentIndex:
    idx: DocumentIndex | None = getattr(request.app.state, "kosync_index", None)
    if idx is None:
        idx = DocumentIndex()
        request.app.state.kosync_index = idx
    return idx


def _authorize(request: Request, acc: Accounts) -> Principal | None:
    user = request.headers.get("x-auth-user", "")
    key = request.headers.get("x-auth-key", "")
    if not user or not _KEY.match(key) or len(user) > 255:
        return None
    key = key.lower()
    p = acc.cached_password(user, key, "kosync")
    if p is not None:
        return p
    ip = request.client.host if request.client else "unknown"
    if acc.fail_limiter.retry_after(ip):
        return None  # too many failures from this address: refused without a hash
    p = acc.from_password(user, key, "kosync")
    if p is None:
        acc.fail_limiter.hit(ip)
    return p


async def _json(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except Exception:
        return None
    return body if isinstance(body, dict) else None


@router.post("/users/create", status_code=201)
async def create_user(request: Request) -> JSONResponse:
    acc = _accounts(request)
    if acc is None:
        return _error("internal")
    if not acc.settings.kosync_registration:
        return _error("registration_disabled")
    body = await _json(request)
    username = body.get("username") if body else None
    key = body.get("password") if body else None
    if not isinstance(username, str) or not isinstance(key, str):
        return _error("invalid_fields")
    if not USERNAME.match(username) or not _KEY.match(key):
        return _error("invalid_fields")

    def create() -> str:
        with acc.db.session() as db:
            if acc._find(db, username) is not None:
                return "exists"
            now = utcnow()
            db.add(
                User(
                    username=username,
                    email=None,
                    password_hash=None,  # adopted at the first web login, see Accounts.login
                    kosync_key_hash=security.hash_password(key.lower()),
                    role="user",
                    disabled=False,
                    token_version=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        return "ok"

    try:
        outcome = await anyio.to_thread.run_sync(create)
    except IntegrityError:
        outcome = "exists"
    if outcome == "exists":
        return _error("user_exists")
    return JSONResponse({"username": username}, status_code=201)


@router.get("/users/auth")
def auth(request: Request) -> JSONResponse:
    acc = _accounts(request)
    if acc is None:
        return _error("internal")
    if _authorize(request, acc) is None:
        return _error("unauthorized")
    return JSONResponse({"authorized": "OK"})


@router.put("/syncs/progress")
async def put_progress(request: Request) -> JSONResponse:
    acc = _accounts(request)
    if acc is None:
        return _error("internal")
    p = await anyio.to_thread.run_sync(_authorize, request, acc)
    if p is None:
        return _error("unauthorized")
    body = await _json(request)
    if body is None:
        return _error("invalid_fields")
    document = body.get("document")
    if not document:
        return _error("document_missing")
    progress = body.get("progress")
    percentage = body.get("percentage")
    device = body.get("device")
    device_id = body.get("device_id")
    if (
        not isinstance(document, str)
        or not _DOC.match(document)
        or not isinstance(progress, str)
        or len(progress) > 4096
        or isinstance(percentage, bool)
        or not isinstance(percentage, int | float)
        or not 0 <= percentage <= 1
        or not isinstance(device, str)
        or len(device) > 100
        or not isinstance(device_id, str)
        or len(device_id) > 100
    ):
        return _error("invalid_fields")
    document = document.lower()
    now = int(time.time())
    lib = services(request).state.get()
    book_id = await anyio.to_thread.run_sync(_index(request).book_of, lib, document)

    def save() -> None:
        for _ in range(2):
            try:
                with acc.db.session() as db:
                    row = db.get(KosyncProgress, (p.id, document))
                    if row is None:
                        row = KosyncProgress(user_id=p.id, document=document)
                        db.add(row)
                    row.progress = progress
                    row.percentage = float(percentage)
                    row.device = device
                    row.device_id = device_id
                    row.timestamp = now
                    row.book_id = book_id
                break
            except IntegrityError:
                continue
        if book_id is not None:  # the same position becomes the book's progress
            save_progress(acc, p.id, book_id, round(float(percentage) * 100, 2), progress, device)

    await anyio.to_thread.run_sync(save)
    return JSONResponse({"document": document, "timestamp": now})


@router.get("/syncs/progress/{document}")
def get_progress(request: Request, document: str) -> JSONResponse:
    acc = _accounts(request)
    if acc is None:
        return _error("internal")
    p = _authorize(request, acc)
    if p is None:
        return _error("unauthorized")
    if not _DOC.match(document):
        return _error("invalid_fields")
    with acc.db.session() as db:
        row = db.scalars(
            select(KosyncProgress).where(
                KosyncProgress.user_id == p.id, KosyncProgress.document == document.lower()
            )
        ).first()
        if row is None:
            return JSONResponse({})
        return JSONResponse(
            {
                "document": row.document,
                "percentage": row.percentage,
                "progress": row.progress,
                "device": row.device,
                "device_id": row.device_id,
                "timestamp": row.timestamp,
            }
        )
