"""Downloads (Range, ETag, Content-Disposition) and covers (original + thumbnail)."""

from __future__ import annotations

from email.utils import formatdate
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from starlette.responses import FileResponse, Response

from ..cache import CachedResponse
from ..covers import cover_path, safe_join
from ..openapi import answers
from ..services import response_key, services
from ..xmltext import clean_filename

# the routes answer files and images, never JSON: no application/json 200 in the schema
router = APIRouter(prefix="/api/files", tags=["files"], default_response_class=Response)

MIME = {
    "EPUB": "application/epub+zip",
    "KEPUB": "application/kepub+zip",
    "PDF": "application/pdf",
    "MOBI": "application/x-mobipocket-ebook",
    "AZW": "application/vnd.amazon.ebook",
    "AZW3": "application/x-mobi8-ebook",
    "AZW4": "application/vnd.amazon.ebook",
    "CBZ": "application/vnd.comicbook+zip",
    "CBR": "application/vnd.comicbook-rar",
    "CB7": "application/x-cb7",
    "FB2": "application/x-fictionbook+xml",
    "FBZ": "application/x-zip-compressed-fb2",
    "DJVU": "image/vnd.djvu",
    "DOCX": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "ODT": "application/vnd.oasis.opendocument.text",
    "RTF": "application/rtf",
    "TXT": "text/plain; charset=utf-8",
    "HTML": "text/html; charset=utf-8",
    "HTMLZ": "application/zip",
    "TXTZ": "application/zip",
    "ZIP": "application/zip",
    "LIT": "application/x-ms-reader",
    "LRF": "application/x-sony-bbeb",
    "PDB": "application/vnd.palm",
    "MP3": "audio/mpeg",
    "M4B": "audio/mp4",
}
MEMORY_SERVE_MAX = 2 * 1024 * 1024
# in the path parameter's schema: a client learns the rule, and a bad one is a 422
Fmt = Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,16}$")]


def mime_for(fmt: str) -> str:
    return MIME.get(fmt.upper(), "application/octet-stream")


_FILE_TYPES = sorted({m.split(";")[0] for m in MIME.values()} | {"application/octet-stream"})
_FILE = {m: {"schema": {"type": "string", "format": "binary"}} for m in _FILE_TYPES}
_PLAIN = {"text/plain": {"schema": {"type": "string"}}}
_DOWNLOAD = answers(
    404,
    ok=_FILE_TYPES,
    extra={
        # several ranges come back as multipart/byteranges
        206: {"content": {**_FILE, "multipart/byteranges": {"schema": {"type": "string"}}}},
        304: {},  # a repeat with If-None-Match, answered from memory or Google Drive
        400: {"content": _PLAIN},  # an unparseable Range header (Starlette's answer)
        416: {"content": _PLAIN},
    },
)
_COVER = answers(404, ok=["image/jpeg"], extra={302: {}, 304: {}})


def _not_found(msg: str) -> HTTPException:
    return HTTPException(404, detail={"error": "not_found", "message": msg})


@router.get("/download/{book_id}/{fmt}", openapi_extra=_DOWNLOAD)
@router.head("/download/{book_id}/{fmt}", openapi_extra=_DOWNLOAD)
async def download(request: Request, book_id: Annotated[int, Path(ge=0)], fmt: Fmt) -> Response:
    svc = services(request)
    lib = svc.library(request)
    b = lib.books.get(book_id)
    if b is None:
        raise _not_found(f"no book {book_id}")
    f = b.format(fmt)
    if f is None:
        raise _not_found(f"book {book_id} has no {fmt.upper()} file")
    path = safe_join(lib.root, b.path, f.filename)
    if svc.storage.drive is not None:  # USE_GOOGLE_DRIVE: Drive first, local copy as fallback
        from ..storage.drive_http import drive_download

        local = path is not None and path.is_file()
        remote = await drive_download(request, svc, b.path, f.filename, mime_for(f.fmt), local)
        if remote is not None:
            return remote
    if path is None or not path.is_file():
        raise _not_found(f"the {f.fmt} file of book {book_id} is missing on disk")
    st = path.stat()
    response = FileResponse(
        path,
        media_type=mime_for(f.fmt),
        filename=clean_filename(f.filename),  # calibre names may hold control characters
        headers={"cache-control": "private, max-age=0, must-revalidate"},
        stat_result=st,
    )
    if st.st_size <= MEMORY_SERVE_MAX and "range" not in request.headers:
        # small files (most e-books) are kept in memory for this library version; the
        # fast path answers repeats without touching the disk (Range requests skip it)
        body = path.read_bytes()
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        headers = [h for h in headers if h[0] != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        etag = response.headers.get("etag", "").encode() or None
        svc.responses.set(
            response_key(lib.version, request.scope), CachedResponse(200, headers, body, etag)
        )
    return response


@router.get("/cover/{book_id}", openapi_extra=_COVER)
@router.head("/cover/{book_id}", openapi_extra=_COVER)
async def cover(
    request: Request,
    book_id: Annotated[int, Path(ge=0)],
    size: Literal["original", "thumbnail", "thumb"] = "original",
    v: Annotated[int | None, Query()] = None,
) -> Response:
    svc = services(request)
    lib = svc.library(request)
    b = lib.books.get(book_id)
    if b is None:
        raise _not_found(f"no book {book_id}")
    src = cover_path(lib, b)
    thumb = size != "original"
    s3 = svc.storage.covers
    if s3 is not None and b.has_cover:
        url = s3.url_for(b.id, lib.library_id, src, thumb)
        if url is not None:
            svc.storage.metrics.redirects.labels("cdn" if s3.cdn else "s3").inc()
            headers = {"location": url, "cache-control": "private, max-age=60"}
            # repeats are answered by the fast path for a minute (a presigned URL is reused
            # for half its lifetime; a library change moves the key anyway)
            raw = [(k.encode(), v.encode()) for k, v in headers.items()]
            raw.append((b"content-length", b"0"))
            svc.responses.set(
                response_key(lib.version, request.scope),
                CachedResponse(302, raw, b"", None),
                ttl=min(60.0, s3.expiry / 4),
            )
            return Response(status_code=302, headers=headers)
        if not s3.ok:
            svc.storage.metrics.fallbacks.labels("s3_covers").inc()
    if src is None:
        raise _not_found(f"book {book_id} has no cover")
    path = svc.thumbnails.get(lib, b) if thumb else src
    if path is None:
        raise _not_found(f"book {book_id} has no cover")
    stamp = b.cover_version
    body = path.read_bytes()
    etag = f'"c{b.id}-{stamp}-{"t" if thumb else "o"}"'
    cache_control = (
        "public, max-age=31536000, immutable"
        if v == stamp
        else "public, max-age=60, must-revalidate"
    )
    headers = {
        "etag": etag,
        "last-modified": formatdate(b.last_modified_epoch or 0, usegmt=True),
        "cache-control": cache_control,
    }
    raw = [(b"content-type", b"image/jpeg"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), val.encode()) for k, val in headers.items()]
    if s3 is None:  # with S3 covers a local answer is a fallback: never pinned in memory
        svc.responses.set(
            response_key(lib.version, request.scope), CachedResponse(200, raw, body, etag.encode())
        )
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="image/jpeg", headers=headers)
