"""The FastAPI application: `lectern_app.main:app` or `create_app(settings)`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from . import __version__
from .accounts import mount as accounts_mount
from .accounts.config import AccountSettings
from .accounts.gate import AuthGate
from .accounts.service import Accounts
from .api import books, categories, files, health
from .config import Settings
from .fastpath import FastPath
from .openapi import install as install_openapi
from .privacy import private_dir
from .services import Services

log = logging.getLogger("lectern")


def create_app(
    settings: Settings | None = None, account_settings: AccountSettings | None = None
) -> FastAPI:
    settings = settings or Settings.from_env()
    svc = Services(settings)
    accounts = Accounts(
        account_settings or AccountSettings.from_env(settings.data_dir), settings.data_dir
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            private_dir(settings.data_dir)
        except OSError as e:
            log.error("DATA_DIR %s is not writable: %s", settings.data_dir, e)
        try:
            await anyio.to_thread.run_sync(accounts.start)
        except Exception as e:  # anonymous browsing goes on; sign-in answers 503
            log.error("accounts database unavailable: %s: %s", type(e).__name__, e)
        svc.state.refresh()
        svc.start()  # bus, shared cache writer, S3 cover checks (none without the env vars)
        watcher = None
        if settings.watch and settings.library_path is not None:
            from .watcher import LibraryWatcher

            watcher = LibraryWatcher(svc.state)
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            svc.state.close()
            svc.close()
            accounts.close()

    app = FastAPI(
        title="Lectern",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    install_openapi(app)  # the error shapes the handlers below really send
    app.state.services = svc
    app.state.accounts = accounts

    # Starlette's own (unknown path, wrong method, unparseable body) too: one error shape
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail: dict[str, Any] = (
            exc.detail
            if isinstance(exc.detail, dict)
            else {"error": "http_error", "message": str(exc.detail)}
        )
        if request.url.path.startswith(("/api", "/opds")) or not _wants_html(request):
            return JSONResponse(
                {"detail": detail}, status_code=exc.status_code, headers=exc.headers
            )
        from .web import error_page

        return error_page(request, exc.status_code, detail)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return JSONResponse({"detail": {"error": "invalid_request", "errors": errors}}, 422)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(
            {"detail": {"error": "internal_error", "message": type(exc).__name__}}, 500
        )

    app.include_router(health.router)
    app.include_router(books.router)
    app.include_router(categories.router)
    app.include_router(files.router)
    from . import opds, web

    app.include_router(opds.router)
    accounts_mount(app)
    web.mount(app)
    app.add_middleware(FastPath, services=svc)
    app.add_middleware(AuthGate, accounts=accounts)  # outermost: before the fast path
    return app


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def __getattr__(name: str) -> FastAPI:
    # `lectern_app.main:app` builds the app from the environment on first use
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
