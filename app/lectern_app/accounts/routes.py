"""/api/auth (login, refresh, logout), /api/admin/users, /api/user/me and API tokens."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from .deps import AccountsDep, AdminDep, UserDep, http_error
from .gate import REFRESH_COOKIE, clear_cookies
from .service import EMAIL, MIN_PASSWORD, USERNAME, AccountError

auth_router = APIRouter(prefix="/api/auth", tags=["auth"])
admin_router = APIRouter(prefix="/api/admin", tags=["admin"])
me_router = APIRouter(prefix="/api/user", tags=["user"])

Str255 = Annotated[str, Field(min_length=1, max_length=255)]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
# what the service accepts, published so clients know before they try
NewPassword = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=1024)]
Email = Annotated[str | None, Field(max_length=255, pattern=f"^$|{EMAIL.pattern}")]  # "": none


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: dict[str, Any]


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@auth_router.post("/login", response_model=TokenOut)
def login(
    request: Request,
    acc: AccountsDep,
    username: Annotated[str, Form(min_length=1, max_length=255, description="username or email")],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
) -> TokenOut:
    try:
        pair, p = acc.login(username, password, _client_ip(request))
    except AccountError as e:
        raise http_error(e) from None
    return TokenOut(
        access_token=pair.access,
        refresh_token=pair.refresh,
        expires_in=pair.access_expires_in,
        user={"id": p.id, "username": p.username, "role": p.role},
    )


@auth_router.post("/refresh", response_model=TokenOut)
def refresh(
    request: Request,
    acc: AccountsDep,
    refresh_token: Annotated[str | None, Form(max_length=4096)] = None,
) -> TokenOut:
    token = refresh_token or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise http_error(AccountError(401, "invalid_token", "no refresh token"))
    try:
        pair, p = acc.refresh(token)
    except AccountError as e:
        raise http_error(e) from None
    return TokenOut(
        access_token=pair.access,
        refresh_token=pair.refresh,
        expires_in=pair.access_expires_in,
        user={"id": p.id, "username": p.username, "role": p.role},
    )


@auth_router.post("/logout", status_code=204)
def logout(
    request: Request,
    acc: AccountsDep,
    refresh_token: Annotated[str | None, Form(max_length=4096)] = None,
) -> Response:
    token = refresh_token or request.cookies.get(REFRESH_COOKIE)
    if token:
        acc.logout(token)
    r = Response(status_code=204)
    for c in clear_cookies():
        r.headers.append("set-cookie", c)
    return r


# ---------------------------------------------------------------- admin
class NewUser(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=64, pattern=USERNAME.pattern)]
    password: NewPassword
    email: Email = None
    role: Literal["admin", "user"] = "user"


class UserPatch(BaseModel):
    disabled: bool | None = None
    role: Literal["admin", "user"] | None = None
    email: Email = None


class PasswordReset(BaseModel):
    password: NewPassword
    # a reset usually follows a compromise: the user's API tokens are revoked unless kept
    keep_tokens: bool = False


UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@admin_router.get("/users")
def list_users(acc: AccountsDep, _: AdminDep) -> list[dict[str, Any]]:
    return acc.list_users()


@admin_router.post("/users", status_code=201)
def create_user(body: NewUser, acc: AccountsDep, _: AdminDep) -> dict[str, Any]:
    try:
        return acc.create_user(body.username, body.password, body.email, body.role)
    except AccountError as e:
        raise http_error(e) from None


@admin_router.get("/users/{user_id}")
def get_user(user_id: UserId, acc: AccountsDep, _: AdminDep) -> dict[str, Any]:
    try:
        return acc.get_user(user_id)
    except AccountError as e:
        raise http_error(e) from None


@admin_router.patch("/users/{user_id}")
def patch_user(user_id: UserId, body: UserPatch, acc: AccountsDep, me: AdminDep) -> dict[str, Any]:
    try:
        return acc.update_user(
            user_id, disabled=body.disabled, role=body.role, email=body.email, actor=me.id
        )
    except AccountError as e:
        raise http_error(e) from None


@admin_router.post("/users/{user_id}/password")
def reset_password(
    user_id: UserId, body: PasswordReset, acc: AccountsDep, _: AdminDep
) -> dict[str, Any]:
    try:
        return acc.update_user(user_id, password=body.password, keep_tokens=body.keep_tokens)
    except AccountError as e:
        raise http_error(e) from None


# ---------------------------------------------------------------- me
class PasswordChange(BaseModel):
    current_password: Password
    new_password: NewPassword
    keep_tokens: bool = False  # keep the API tokens (every session ends regardless)


class NewToken(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]


@me_router.get("/me")
def me(acc: AccountsDep, user: UserDep) -> dict[str, Any]:
    try:
        return acc.get_user(user.id)
    except AccountError as e:
        raise http_error(e) from None


@me_router.put("/me/password", status_code=204)
def change_password(body: PasswordChange, acc: AccountsDep, user: UserDep) -> Response:
    try:
        acc.change_own_password(user.id, body.current_password, body.new_password, body.keep_tokens)
    except AccountError as e:
        raise http_error(e) from None
    return Response(status_code=204)


@me_router.get("/tokens")
def list_tokens(acc: AccountsDep, user: UserDep) -> list[dict[str, Any]]:
    return acc.list_api_tokens(user.id)


@me_router.post("/tokens", status_code=201)
def create_token(body: NewToken, acc: AccountsDep, user: UserDep) -> JSONResponse:
    return JSONResponse(acc.create_api_token(user.id, body.name), status_code=201)


@me_router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], acc: AccountsDep, user: UserDep
) -> Response:
    try:
        acc.revoke_api_token(user.id, token_id)
    except AccountError as e:
        raise http_error(e) from None
    return Response(status_code=204)
