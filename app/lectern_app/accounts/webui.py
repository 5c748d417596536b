"""Web UI for accounts: sign in/out, "My shelf" (favorites, reading progress including
KOReader's, reading lists) and the book page's favorite/list/progress forms.

Library pages stay shared and cached (the same HTML for everyone); everything personal
lives on these pages, which are never cached (Cache-Control: no-store). Forms are plain
POSTs: session cookies are SameSite=Lax and HttpOnly, a POST whose Origin is another
site is refused, and one without an Origin (or `Origin: null`) needs the form's `csrf`
field: a keyed hash of the session (signed in) or of the `lectern_csrf` nonce cookie
(the sign-in form), so other sites cannot submit them (see gate.py).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, HTTPException, Path, Request
from sqlalchemy import select
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..web import render
from .authcache import Principal
from .deps import optional_user
from .gate import (
    CSRF_COOKIE,
    REFRESH_COOKIE,
    SCOPE_CSRF,
    SCOPE_SESSION,
    clear_cookies,
    csrf_valid,
    same_origin,
    session_cookies,
)
from .models import Favorite, ReadingList, ReadingListItem, utcnow
from .personal import (
    add_favorite_for,
    add_to_list,
    brief,
    create_list_for,
    current_library,
    favorites_of,
    list_detail,
    list_summaries,
    progress_of,
    require_book,
    save_progress,
)
from .security import csrf_token
from .service import AccountError, Accounts

router = APIRouter(include_in_schema=False)
NO_STORE = {"cache-control": "no-store"}
BookIdForm = Annotated[int, Form(ge=0, le=2**31 - 1)]
CsrfForm = Annotated[str | None, Form(max_length=128)]


def _acc(request: Request) -> Accounts:
    acc: Accounts = request.app.state.accounts
    if not acc.started:
        raise HTTPException(503, detail={"error": "accounts_unavailable", "message": "down"})
    return acc


def _title(request: Request) -> str:
    t: str = request.app.state.services.settings.title
    return t


def _safe_next(target: str | None) -> str:
    """Only local paths: never an open redirect to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/me"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/me"
    return target


def _refuse() -> HTTPException:
    return HTTPException(
        403,
        detail={
            "error": "csrf_refused",
            "message": "this form did not come from this site: reload the page and try again",
        },
    )


def _check_form(request: Request, csrf: str | None) -> None:
    """A form POST must come from this site (see the module docstring and gate.py)."""
    verdict = request.scope.get(SCOPE_CSRF)
    if verdict == "ok":
        return
    secret = _acc(request).secret
    if verdict == "token":  # a cookie session without a usable Origin: the field decides
        if csrf and csrf_valid(secret, request.scope[SCOPE_SESSION], csrf):
            return
        if request.url.path == "/login" and _nonce_ok(request, secret, csrf):
            return  # the sign-in form, sent by someone already signed in
        raise _refuse()
    # no session (the sign-in form): Origin if the browser sent one, else the nonce
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        if same_origin(request.scope, origin):
            return
        raise _refuse()
    if not _nonce_ok(request, secret, csrf):
        raise _refuse()


def _login_session(nonce: str) -> str:
    """The CSRF key of the sign-in form: the nonce cookie, apart from every family."""
    return "login:" + nonce


def _nonce_ok(request: Request, secret: str, csrf: str | None) -> bool:
    nonce = request.cookies.get(CSRF_COOKIE)
    return bool(nonce and csrf and csrf_valid(secret, _login_session(nonce), csrf))


def _session_csrf(request: Request) -> str:
    """The token the signed-in user's forms carry."""
    family = request.scope.get(SCOPE_SESSION)
    return csrf_token(_acc(request).secret, family) if family else ""


def _user_or_login(request: Request) -> Principal | Response:
    p = optional_user(request)
    if p is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return p


def _page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(render(name, **ctx), status_code=status, headers=NO_STORE)


def _login_page(
    request: Request, status: int = 200, error: str | None = None, **ctx: Any
) -> HTMLResponse:
    acc = _acc(request)
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    fresh = len(nonce) < 16 or len(nonce) > 64
    if fresh:
        nonce = secrets.token_urlsafe(24)
    r = _page(
        "login.html",
        status=status,
        title=_title(request),
        error=error,
        csrf=csrf_token(acc.secret, _login_session(nonce)),
        **ctx,
    )
    if fresh:
        secure = "; Secure" if acc.settings.cookie_secure else ""
        r.headers.append(
            "set-cookie", f"{CSRF_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Lax{secure}"
        )
    return r


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next=_safe_next(next))


@router.post("/login")
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str | None, Form(max_length=2000)] = None,
    csrf: CsrfForm = None,
) -> Response:
    _check_form(request, csrf)
    acc = _acc(request)
    ip = request.client.host if request.client else "unknown"
    try:
        pair, _p = acc.login(username, password, ip)
    except AccountError as e:
        r = _login_page(
            request, status=e.status, error=e.message, next=_safe_next(next), username=username
        )
        for k, v in e.headers.items():
            r.headers[k] = v
        return r
    ok = RedirectResponse(_safe_next(next), status_code=303)
    for c in session_cookies(
        pair.access, pair.refresh, acc.settings.refresh_days * 86400, acc.settings.cookie_secure
    ):
        ok.headers.append("set-cookie", c)
    return ok


@router.post("/logout")
def logout(request: Request, csrf: CsrfForm = None) -> Response:
    _check_form(request, csrf)
    acc = _acc(request)
    token = request.cookies.get(REFRESH_COOKIE)
    if token:
        acc.logout(token)
    r = RedirectResponse("/", status_code=303)
    for c in clear_cookies():
        r.headers.append("set-cookie", c)
    return r


@router.get("/me")
def shelf(request: Request) -> Response:
    p = _user_or_login(request)
    if isinstance(p, Response):
        return p
    acc = _acc(request)
    lib = current_library(request)
    with acc.db.session() as db:
        favorites = favorites_of(db, p.id, lib)
        progress = progress_of(db, p.id, lib)
        lists = list_summaries(db, p.id)
    return _page(
        "me.html",
        title=_title(request),
        user=p,
        favorites=favorites,
        progress=progress,
        lists=lists,
        csrf=_session_csrf(request),
    )


@router.get("/me/lists/{list_id}")
def list_page(request: Request, list_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Response:
    p = _user_or_login(request)
    if isinstance(p, Response):
        return p
    acc = _acc(request)
    with acc.db.session() as db:
        rl = db.get(ReadingList, list_id)
        if rl is None or rl.user_id != p.id:
            raise HTTPException(404, detail={"error": "not_found", "message": "no such list"})
        detail = list_detail(db, rl, current_library(request))
    return _page(
        "readinglist.html", title=_title(request), user=p, rl=detail, csrf=_session_csrf(request)
    )


def _need_user(request: Request, csrf: str | None) -> Principal:
    p = optional_user(request)
    if p is None:
        raise HTTPException(401, detail={"error": "auth_required", "message": "sign in first"})
    _check_form(request, csrf)
    return p


def _back(to: str | None, default: str = "/me") -> RedirectResponse:
    return RedirectResponse(_safe_next(to) if to else default, status_code=303)


@router.post("/me/favorites")
def favorite(
    request: Request,
    book_id: BookIdForm,
    action: Annotated[str, Form(pattern="^(add|remove)$")] = "add",
    next: Annotated[str | None, Form(max_length=2000)] = None,
    csrf: CsrfForm = None,
) -> Response:
    p = _need_user(request, csrf)
    acc = _acc(request)
    if action == "add":
        require_book(request, book_id)
        add_favorite_for(acc, p.id, book_id)
    else:
        with acc.db.session() as db:
            f = db.get(Favorite, (p.id, book_id))
            if f is not None:
                db.delete(f)
    return _back(next)


@router.post("/me/progress")
def progress(
    request: Request,
    book_id: BookIdForm,
    percentage: Annotated[float, Form(ge=0, le=100)],
    next: Annotated[str | None, Form(max_length=2000)] = None,
    csrf: CsrfForm = None,
) -> Response:
    p = _need_user(request, csrf)
    require_book(request, book_id)
    save_progress(_acc(request), p.id, book_id, percentage, None, "web")
    return _back(next)


@router.post("/me/lists")
def new_list(
    request: Request,
    name: Annotated[str, Form(min_length=1, max_length=200)],
    csrf: CsrfForm = None,
) -> Response:
    p = _need_user(request, csrf)
    created = create_list_for(_acc(request), p.id, name)
    return _back(f"/me/lists/{created['id']}")


@router.post("/me/lists/add")
def add_to_named_list(
    request: Request,
    book_id: BookIdForm,
    name: Annotated[str, Form(min_length=1, max_length=200)],
    next: Annotated[str | None, Form(max_length=2000)] = None,
    csrf: CsrfForm = None,
) -> Response:
    """The book page's form: add to the list of that name, creating it if needed."""
    p = _need_user(request, csrf)
    acc = _acc(request)
    require_book(request, book_id)
    with acc.db.session() as db:
        rl = db.scalars(
            select(ReadingList).where(ReadingList.user_id == p.id, ReadingList.name == name.strip())
        ).first()
        list_id = rl.id if rl is not None else None
    if list_id is None:
        list_id = int(create_list_for(acc, p.id, name)["id"])
    add_to_list(acc, p.id, list_id, book_id)
    return _back(next, f"/me/lists/{list_id}")


@router.post("/me/lists/{list_id}/edit")
def edit_list(
    request: Request,
    list_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    action: Annotated[str, Form(pattern="^(rename|delete|remove|up|down)$")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    book_id: Annotated[int | None, Form(ge=0, le=2**31 - 1)] = None,
    csrf: CsrfForm = None,
) -> Response:
    p = _need_user(request, csrf)
    acc = _acc(request)
    with acc.db.session() as db:
        rl = db.get(ReadingList, list_id)
        if rl is None or rl.user_id != p.id:
            raise HTTPException(404, detail={"error": "not_found", "message": "no such list"})
        if action == "delete":
            for item in db.scalars(select(ReadingListItem).where(ReadingListItem.list_id == rl.id)):
                db.delete(item)
            db.delete(rl)
            return _back("/me")
        if action == "rename" and name and name.strip():
            rl.name = name.strip()
        items = list(
            db.scalars(
                select(ReadingListItem)
                .where(ReadingListItem.list_id == rl.id)
                .order_by(ReadingListItem.position, ReadingListItem.added_at)
            )
        )
        ids = [i.book_id for i in items]
        if book_id is not None and book_id in ids:
            k = ids.index(book_id)
            if action == "remove":
                db.delete(items.pop(k))
            elif action == "up" and k > 0:
                items[k - 1], items[k] = items[k], items[k - 1]
            elif action == "down" and k < len(items) - 1:
                items[k + 1], items[k] = items[k], items[k + 1]
        for pos, item in enumerate(items):
            item.position = pos
        rl.updated_at = utcnow()
    return _back(f"/me/lists/{list_id}")


__all__ = ["brief", "router"]
