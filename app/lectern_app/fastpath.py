"""ASGI layer in front of FastAPI: freshness check, cached responses, request metrics.

Every request first asks the live library for its current version (a few stat calls;
a reload when Calibre wrote). A GET whose URL was answered before for the same library
version is answered from memory without entering FastAPI at all.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import route_group
from .services import SCOPE_LIBRARY, Services, path_query, response_key

# never in the shared cache: files and covers, and anything per user
_LOCAL = ("/api/files/", "/static/", "/api/user", "/api/auth", "/api/admin", "/users/", "/syncs/")
_NO_LIBRARY = ("/static/", "/metrics", "/api/health", "/favicon.ico", "/docs", "/openapi.json")


class FastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.svc = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path: str = scope["path"]
        svc = self.svc
        if not path.startswith(_NO_LIBRARY):
            lib = svc.state.get()
            scope[SCOPE_LIBRARY] = lib
            if (
                lib is not None
                and scope["method"] in ("GET", "HEAD")
                and _header(scope, b"range") is None
            ):
                entry = svc.responses.get(response_key(lib.version, scope))
                if entry is None and svc.shared is not None and not path.startswith(_LOCAL):
                    # second tier: a response another replica rendered from the same content
                    entry = await svc.shared.get(
                        svc.shared.key(svc.fingerprint(lib), path_query(scope))
                    )
                    if entry is not None:
                        svc.responses.set(response_key(lib.version, scope), entry)
                        svc.shared_hits.inc()
                    else:
                        svc.shared_misses.inc()
                if entry is not None:
                    status = 200
                    inm = _header(scope, b"if-none-match")
                    if inm is not None and entry.etag is not None and inm == entry.etag:
                        status = 304
                        await send(
                            {
                                "type": "http.response.start",
                                "status": 304,
                                "headers": [h for h in entry.headers if h[0] == b"etag"],
                            }
                        )
                        await send({"type": "http.response.body", "body": b""})
                    else:
                        await send(
                            {
                                "type": "http.response.start",
                                "status": entry.status,
                                "headers": entry.headers,
                            }
                        )
                        body = b"" if scope["method"] == "HEAD" else entry.body
                        await send({"type": "http.response.body", "body": body})
                    svc.metrics.observe(route_group(path), status, time.perf_counter() - t0)
                    return
        holder = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                holder[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            svc.metrics.observe(route_group(path), holder[0], time.perf_counter() - t0)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            val: bytes = v
            return val
    return None
