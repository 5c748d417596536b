"""ASGI gate in front of the app: who is asking, and may they?

Resolves a principal from `Authorization: Bearer <JWT | lct_ API token>`,
`Authorization: Basic` (OPDS readers; the password may also be an API token) or the web
session cookie, and puts it in the scope. It sits OUTSIDE the response fast path, so a
cached page is never handed to someone the gate refused, and with the auth cache an
authenticated request costs dict lookups, not a DB query or a password hash.

Cross-site request forgery: a state-changing request (POST, PUT, PATCH, DELETE)
authenticated by the session COOKIE must come from this site. An Origin header naming
another site is refused; no Origin, or `Origin: null` (sandboxed frames, some redirects,
privacy settings), is accepted only with the session's CSRF token, in the
`X-CSRF-Token` header or, on the web UI's form routes (is_form_route), the `csrf` form
field, which those routes check themselves. Requests authenticated by a header (Bearer,
Basic) carry no ambient credential and need no token.

Anonymous access (AUTH_REQUIRED=false, the default): library pages, the books API and
OPDS stay open as before; credentials, when sent, must be valid (a wrong password is a
401, never a silent downgrade to anonymous). AUTH_REQUIRED=true: everything but OPEN
needs a user. /api/user/* and /api/admin/* always need one (their routes check).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable
from http.cookies import SimpleCookie
from urllib.parse import quote, urlsplit

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import security
from .authcache import Principal
from .service import AccountError, Accounts

log = logging.getLogger("lectern.accounts")
SCOPE_USER = "lectern.user"
SCOPE_SESSION = "lectern.session"  # the refresh family of a cookie session: its CSRF key
SCOPE_CSRF = "lectern.csrf"  # "ok", "token" (the route must see a valid token) or absent
ACCESS_COOKIE = "lectern_access"
REFRESH_COOKIE = "lectern_refresh"
CSRF_COOKIE = "lectern_csrf"  # a nonce keying the sign-in form's token before a session exists
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# writes that never act on the cookie session (the API sign-in answers in its body)
COOKIE_UNUSED = ("/api/auth/login",)
# Web UI routes that take the token as the `csrf` form field and check it themselves
FORM_PATHS = ("/login", "/logout")
FORM_PREFIX = "/me/"
OPEN = (
    "/api/health",
    "/metrics",
    "/static/",
    "/favicon.ico",
    "/api/auth/",
    "/api/docs",
    "/api/openapi.json",
    "/login",
    "/logout",
    "/users/",  # KOReader sync authenticates with its own headers
    "/syncs/",
    "/healthcheck",
)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v).decode("latin-1")
    return None


def _cookies(scope: Scope) -> dict[str, str]:
    raw = _header(scope, b"cookie")
    if not raw:
        return {}
    c: SimpleCookie = SimpleCookie()
    try:
        c.load(raw)
    except Exception:
        return {}
    return {k: m.value for k, m in c.items()}


def session_cookies(access: str, refresh: str, refresh_max_age: int, secure: bool) -> list[str]:
    flags = "; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
    return [
        f"{ACCESS_COOKIE}={access}; Path=/{flags}",
        f"{REFRESH_COOKIE}={refresh}; Path=/; Max-Age={refresh_max_age}{flags}",
    ]


def clear_cookies() -> list[str]:
    return [
        f"{ACCESS_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
        f"{REFRESH_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
    ]


class AuthGate:
    def __init__(self, app: ASGIApp, accounts: Accounts) -> None:
        self.app = app
        self.accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        acc = self.accounts
        auth = _header(scope, b"authorization")
        principal: Principal | None = None
        if not acc.started:  # accounts database down: anonymous only, never a 500
            if (auth or acc.settings.auth_required) and not path.startswith(OPEN):
                await _deny(send, scope, 503, "accounts_unavailable", "accounts database down")
                return
            scope[SCOPE_USER] = None
            await self.app(scope, receive, send)
            return
        set_cookies: list[str] = []
        by_cookie = False
        if auth:
            try:
                client = scope.get("client")
                principal = await self._from_header(auth, client[0] if client else "unknown")
            except AccountError as e:
                if path.startswith(OPEN) and not path.startswith("/api/auth/logout"):
                    principal = None  # e.g. a stale header on /api/health or login
                else:
                    await _deny(send, scope, e.status, e.code, e.message, e.headers)
                    return
            except Exception as e:  # the accounts DB went away: a clear 503, not a 500
                log.error("auth check failed: %s", type(e).__name__)
                await _deny(send, scope, 503, "accounts_unavailable", "accounts database error")
                return
        else:
            cookies = _cookies(scope)
            if ACCESS_COOKIE in cookies or REFRESH_COOKIE in cookies:
                try:
                    principal, family, set_cookies = await self._from_cookies(cookies)
                except Exception as e:
                    log.error("auth check failed: %s", type(e).__name__)
                    principal, family, set_cookies = None, None, []
                if principal is not None:
                    by_cookie = True
                    scope[SCOPE_SESSION] = family
        scope[SCOPE_USER] = principal
        if by_cookie and scope["method"] not in SAFE_METHODS and path not in COOKIE_UNUSED:
            verdict = self._csrf_verdict(scope)
            if verdict == "refuse":
                await _deny(send, scope, 403, "csrf_refused", "cross-site request: reload the page")
                return
            scope[SCOPE_CSRF] = verdict
        if principal is None and acc.settings.auth_required and not path.startswith(OPEN):
            await _deny(send, scope, 401, "auth_required", "sign in first")
            return
        if not set_cookies:
            await self.app(scope, receive, send)
            return

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"set-cookie", c.encode()) for c in set_cookies]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookies)

    def _csrf_verdict(self, scope: Scope) -> str:
        """ "ok", "refuse", or "token" (a web form route must check its `csrf` field)."""
        origin = _header(scope, b"origin")
        if origin is not None and origin != "null":
            return "ok" if same_origin(scope, origin) else "refuse"
        token = _header(scope, CSRF_HEADER)
        family = scope.get(SCOPE_SESSION)
        if token and family and csrf_valid(self.accounts.secret, family, token):
            return "ok"
        return "token" if is_form_route(scope["path"]) else "refuse"

    async def _from_header(self, auth: str, ip: str) -> Principal:
        acc = self.accounts
        scheme, _, value = auth.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value.startswith("lct_"):
            p = await self._run(lambda: acc.from_api_token(value), acc.cached_api_token(value))
            if p is None:
                raise AccountError(401, "invalid_token", "unknown or revoked API token")
            return p
        if scheme == "bearer" and value:
            seen = acc.cached_access(value)
            if seen is None:
                seen = await anyio.to_thread.run_sync(acc.from_access_token, value)
            return seen[0]
        if scheme == "basic" and value:
            wait = acc.fail_limiter.retry_after(ip)
            if wait:
                raise AccountError(
                    429, "too_many_attempts", "too many failed sign-ins", {"Retry-After": str(wait)}
                )
            try:
                user, sep, pw = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise AccountError(401, "invalid_credentials", "malformed Basic header") from None
            if not sep:
                raise AccountError(401, "invalid_credentials", "malformed Basic header")
            p = await self._run(lambda: acc.from_password(user, pw), acc.cached_password(user, pw))
            if p is None:
                acc.fail_limiter.hit(ip)
                raise AccountError(401, "invalid_credentials", "wrong username or password")
            return p
        raise AccountError(401, "invalid_credentials", "unsupported Authorization scheme")

    @staticmethod
    async def _run(
        slow: Callable[[], Principal | None], cached: Principal | None
    ) -> Principal | None:
        if cached is not None:
            return cached
        return await anyio.to_thread.run_sync(slow)

    async def _from_cookies(
        self, cookies: dict[str, str]
    ) -> tuple[Principal | None, str | None, list[str]]:
        """(user, session family, cookies to set) from the session cookies."""
        acc = self.accounts
        access = cookies.get(ACCESS_COOKIE)
        if access:
            seen = acc.cached_access(access)
            if seen is not None:
                return seen[0], seen[1], []
            try:
                p, family = await anyio.to_thread.run_sync(acc.from_access_token, access)
                return p, family, []
            except AccountError:
                pass
        refresh = cookies.get(REFRESH_COOKIE)
        if refresh:
            try:
                pair, p = await anyio.to_thread.run_sync(acc.refresh, refresh)
            except AccountError:
                return None, None, clear_cookies()
            return (
                p,
                pair.family,
                session_cookies(
                    pair.access,
                    pair.refresh,
                    acc.settings.refresh_days * 86400,
                    acc.settings.cookie_secure,
                ),
            )
        return None, None, clear_cookies()


def is_form_route(path: str) -> bool:
    return path in FORM_PATHS or path.startswith(FORM_PREFIX)


def same_origin(scope: Scope, origin: str) -> bool:
    """Origin names the host this request was sent to (the Host header, which the
    proxy passes through unchanged)."""
    host = _header(scope, b"host") or ""
    try:
        return bool(host) and urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False


def csrf_valid(secret: str, session: str, token: str) -> bool:
    expected = security.csrf_token(secret, session).encode()
    return hmac.compare_digest(expected, token.encode("utf-8", "replace"))


async def _deny(
    send: Send,
    scope: Scope,
    status: int,
    code: str,
    message: str,
    extra: dict[str, str] | None = None,
) -> None:
    path: str = scope["path"]
    accept = _header(scope, b"accept") or ""
    if (
        status == 401
        and "text/html" in accept
        and not path.startswith(("/api", "/opds"))
        and scope["method"] in ("GET", "HEAD")
    ):
        target = path + (
            "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
        )
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", f"/login?next={quote(target, safe='')}".encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps({"detail": {"error": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    if status == 401:
        challenge = (
            b'Basic realm="Lectern", charset="UTF-8"'
            if path.startswith("/opds")
            else (b'Bearer realm="Lectern"')
        )
        headers.append((b"www-authenticate", challenge))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
