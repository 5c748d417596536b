"""FastAPI dependencies: the accounts service and the principal the gate resolved."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from .authcache import Principal
from .gate import SCOPE_USER
from .service import AccountError, Accounts


def accounts(request: Request) -> Accounts:
    acc: Accounts = request.app.state.accounts
    if not acc.started:
        raise HTTPException(
            503, detail={"error": "accounts_unavailable", "message": "accounts database down"}
        )
    return acc


def http_error(e: AccountError) -> HTTPException:
    return HTTPException(
        e.status, detail={"error": e.code, "message": e.message}, headers=e.headers or None
    )


def optional_user(request: Request) -> Principal | None:
    p: Principal | None = request.scope.get(SCOPE_USER)
    return p


def current_user(request: Request) -> Principal:
    p = optional_user(request)
    if p is None:
        raise HTTPException(
            401,
            detail={"error": "auth_required", "message": "sign in first"},
            headers={"WWW-Authenticate": 'Bearer realm="Lectern"'},
        )
    return p


def admin_user(p: Annotated[Principal, Depends(current_user)]) -> Principal:
    if not p.is_admin:
        raise HTTPException(403, detail={"error": "forbidden", "message": "admins only"})
    return p


AccountsDep = Annotated[Accounts, Depends(accounts)]
UserDep = Annotated[Principal, Depends(current_user)]
AdminDep = Annotated[Principal, Depends(admin_user)]
