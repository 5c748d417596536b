"""/api/health (seed 002's shape plus the library's state) and /metrics."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..serialize import dumps
from ..services import services

router = APIRouter(tags=["health"])


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


@router.get("/api/health")
async def health(request: Request) -> Response:
    svc = services(request)
    lib = svc.state.get()
    st = svc.state.status
    data_ok = os.access(svc.settings.data_dir, os.W_OK)
    calibre_ok = lib is not None and st.ok
    if calibre_ok and data_ok:
        status = "healthy"
    elif lib is not None:
        status = "degraded"  # e.g. locked: still serving the last good snapshot
    else:
        status = "unhealthy"
    body = {
        "status": status,
        "cache": svc.responses.ping(),
        # the app's own state store under DATA_DIR (users/favorites arrive with issue 4)
        "database": data_ok,
        "calibre": calibre_ok,
        "books": len(lib.books) if lib else 0,
        "last_change": _iso(svc.state.last_change_detected),
        "library": {
            "path": str(svc.settings.library_path) if svc.settings.library_path else None,
            "library_id": lib.library_id if lib else None,
            "version": svc.state.version,
            "reloads": svc.state.reloads,
            "last_modified": _iso(lib.last_change) if lib else None,
            "error": None
            if st.ok
            else {"kind": st.kind, "message": st.message, "since": _iso(st.since)},
        },
    }
    code = 200 if lib is not None else 503
    return Response(
        dumps(body),
        status_code=code,
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    svc = services(request)
    svc.state.get()
    body, ctype = svc.metrics.render()
    return Response(body, media_type=ctype)
