"""Accounts: users, JWT auth, auth cache, personal features and KOReader sync.

Lives in its own database (SQLite under DATA_DIR by default, PostgreSQL by DATABASE_URL);
never touches Calibre's metadata.db.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the accounts routers (auth, admin, user, personal features, KOReader sync)."""
    from . import kosync, personal, routes, webui

    app.include_router(routes.auth_router)
    app.include_router(routes.admin_router)
    app.include_router(routes.me_router)
    app.include_router(personal.router)
    app.include_router(kosync.router)
    app.include_router(webui.router)
