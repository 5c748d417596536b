"""The download response for a book file on Google Drive: streamed, Range, ETag."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio.to_thread
from fastapi import HTTPException, Request
from starlette.responses import Response, StreamingResponse

from ..xmltext import clean_filename
from .gdrive import DriveError, DriveFile

if TYPE_CHECKING:
    from ..services import Services

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _disposition(filename: str) -> str:
    filename = clean_filename(filename)  # calibre names may hold control characters
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """(start, end) inclusive; None without a (usable) Range; False if unsatisfiable."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None  # multiple or malformed ranges: answer with the whole file
    a, b = m.group(1), m.group(2)
    if not a and not b:
        return None
    if not a:  # the last n bytes
        n = int(b)
        if n == 0:
            return False
        return max(0, size - n), size - 1
    start = int(a)
    end = min(int(b), size - 1) if b else size - 1
    if start >= size or start > end:
        return False
    return start, end


async def drive_download(
    request: Request, svc: Services, book_path: str, filename: str, media_type: str, local: bool
) -> Response | None:
    """The response for this file from Drive; None: serve the local copy instead."""
    drive = svc.storage.drive
    assert drive is not None
    try:
        f = await anyio.to_thread.run_sync(drive.resolve, book_path, filename)
    except DriveError as e:
        if local:
            svc.storage.metrics.fallbacks.labels("google_drive").inc()
            return None
        raise HTTPException(
            503,
            detail={"error": "storage_unavailable", "message": str(e)},
            headers={"retry-after": "30"},
        ) from None
    if f is None:
        if local:
            return None
        raise HTTPException(
            404, detail={"error": "not_found", "message": "the file is missing on Google Drive"}
        )
    etag = f'"{f.md5}"' if f.md5 else f'"d{f.id}-{f.size}"'
    headers = {
        "accept-ranges": "bytes",
        "content-disposition": _disposition(filename),
        "cache-control": "private, max-age=0, must-revalidate",
        "etag": etag,
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    rng = parse_range(request.headers.get("range"), f.size)
    if rng is False:
        headers["content-range"] = f"bytes */{f.size}"
        return Response(status_code=416, headers=headers)
    status = 200
    start, end = 0, f.size - 1
    if isinstance(rng, tuple):
        start, end = rng
        status = 206
        headers["content-range"] = f"bytes {start}-{end}/{f.size}"
    headers["content-length"] = str(max(0, end - start + 1))
    if request.method == "HEAD" or f.size == 0:
        return Response(status_code=status, headers=headers, media_type=media_type)
    try:  # the first piece before answering: a failing Drive can still fall back
        first_span = next(drive.chunks(f, start, end))
        first = await anyio.to_thread.run_sync(drive.read_range, f, *first_span)
    except DriveError:
        if local:
            svc.storage.metrics.fallbacks.labels("google_drive").inc()
            return None
        raise HTTPException(
            503, detail={"error": "storage_unavailable", "message": "Google Drive failed"}
        ) from None
    return StreamingResponse(
        _body(drive, f, start, end, first),
        status_code=status,
        headers=headers,
        media_type=media_type,
    )


async def _body(
    drive: object, f: DriveFile, start: int, end: int, first: bytes
) -> AsyncIterator[bytes]:
    from .gdrive import DriveBooks

    assert isinstance(drive, DriveBooks)
    yield first
    spans = list(drive.chunks(f, start, end))[1:]
    for span in spans:
        data = await anyio.to_thread.run_sync(drive.read_range, f, *span)
        yield data
