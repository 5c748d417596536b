"""/api/health (seed 002's shape plus the library's state) and /metrics."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..openapi import answers
from ..serialize import dumps
from ..services import Services, services

router = APIRouter(tags=["health"])


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


_HEALTH = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"enum": ["healthy", "degraded", "unhealthy"]}},
}
_AS_HEALTH = {"content": {"application/json": {"schema": _HEALTH}}}


# unhealthy (no library to serve) is the same document with 503
@router.get("/api/health", openapi_extra=answers(extra={200: _AS_HEALTH, 503: _AS_HEALTH}))
async def health(request: Request) -> Response:
    svc = services(request)
    lib = svc.state.get()
    st = svc.state.status
    data_ok = os.access(svc.settings.data_dir, os.W_OK)
    calibre_ok = lib is not None and st.ok
    if svc.shared is not None:  # pings Redis: off the event loop
        remote = await anyio.to_thread.run_sync(remote_status, svc)
    else:
        remote = remote_status(svc)
    if calibre_ok and data_ok and remote.get("ok", True):
        status = "healthy"
    elif lib is not None:
        status = "degraded"  # e.g. locked: still serving the last good snapshot
    else:
        status = "unhealthy"
    body = {
        "status": status,
        "cache": svc.responses.ping(),
        # the app's own state store under DATA_DIR
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
    sections: dict[str, Any] = remote["sections"]
    body.update(sections)
    if "redis" in sections:
        body["cache"] = bool(body["cache"]) and bool(sections["redis"]["cache"]["ok"])
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


def remote_status(svc: Services) -> dict[str, Any]:
    """Redis and remote storage: only present when configured (REDIS_URL, USE_S3_COVERS,
    USE_GOOGLE_DRIVE). A failing one makes the status "degraded": the app still answers
    (from memory and local disk), so the HTTP code stays 200."""
    sections: dict[str, Any] = {}
    ok = True
    if svc.shared is not None:
        cache_ok = svc.shared.ping()
        svc.storage.metrics.up.labels("redis").set(1 if cache_ok else 0)
        sections["redis"] = {
            "cache": {**svc.shared.status(), "ok": cache_ok},
            "bus": {**svc.bus.status(), "library_reloads": svc.replicas.library_reloads},
        }
        ok = ok and cache_ok and svc.bus.connected
    storage = svc.storage.status()
    if storage is not None:
        sections["storage"] = storage
        ok = ok and svc.storage.healthy
    return {"ok": ok, "sections": sections}
