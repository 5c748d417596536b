"""The published OpenAPI schema describes what the app really sends.

FastAPI documents one error, a 422 whose `detail` is a list. Lectern answers every error
with `{"detail": {"error": code, "message": text}}` (main.py's handlers, the auth gate)
and a request that fails validation with
`{"detail": {"error": "invalid_request", "errors": [{"loc": [...], "msg": "..."}]}}`;
KOReader's sync routes answer `{"code", "message"}` as the reference server does.

Statuses come from three places:
* the route itself, through `openapi_extra=answers(...)` beside its code;
* what stands in front of every route, derived from the auth gate's own constants:
  401/429 outside its OPEN paths, 403 for a cross-site write and on the admin API,
  503 when the accounts database fails;
* `_ROUTE_ERRORS` and `_KOSYNC_ERRORS` below, for the accounts and KOReader routes,
  which declare nothing themselves.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI

_REF = "#/components/schemas/"
ERROR = {"$ref": _REF + "Error"}
KOSYNC_ERROR = {"$ref": _REF + "KOSyncError"}
_DETAIL = {
    "title": "ErrorDetail",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a stable code: not_found, auth_required…"},
        "message": {"type": "string", "description": "for people"},
        "reason": {
            "type": "string",
            "description": "library_unavailable only: missing, locked, io, corrupt or invalid",
        },
    },
}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "ErrorDetail": _DETAIL,
    "Error": {
        "title": "Error",
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"$ref": _REF + "ErrorDetail"}},
    },
    # FastAPI's names, so that every 422 it documents points at the real shape
    "ValidationError": {
        "title": "ValidationError",
        "type": "object",
        "required": ["loc", "msg"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
        },
    },
    "HTTPValidationError": {
        "title": "HTTPValidationError",
        "description": "The request failed validation (`errors`), or a route refused a value"
        " (`message`, e.g. invalid_name).",
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["error", "errors"],
                        "properties": {
                            "error": {"const": "invalid_request"},
                            "errors": {
                                "type": "array",
                                "items": {"$ref": _REF + "ValidationError"},
                            },
                        },
                    },
                    {"$ref": _REF + "ErrorDetail"},
                ]
            }
        },
    },
    "KOSyncError": {
        "title": "KOSyncError",
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    },
}
_DESCRIPTIONS = {
    206: "Part of the file (Range)",
    302: "Redirect to the file's URL",
    304: "Not modified (If-None-Match)",
    400: "Bad request",
    401: "Not signed in, or the credentials sent are wrong",
    402: "KOReader sync: the user exists, or registration is off",
    403: "Forbidden (not an admin, a cross-site write, a wrong current password…)",
    404: "Not found",
    409: "Conflict (the name is taken, a concurrent change)",
    416: "Range not satisfiable",
    422: "Validation Error",
    429: "Too many failed sign-ins",
    502: "KOReader sync: the accounts database is down",
    503: "The library, the accounts database or a storage backend is unavailable",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "required": False}},
    429: {"Retry-After": {"schema": {"type": "string"}, "required": False}},
    503: {"Retry-After": {"schema": {"type": "string"}, "required": False}},
}


def _error(status: int, schema: Mapping[str, Any] = ERROR) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": dict(schema)}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def answers(
    *errors: int,
    ok: Iterable[str] = (),
    cached: bool = False,
    extra: Mapping[int, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """`openapi_extra` for a route: the media types of its 200 (`ok`, when not JSON), the
    statuses it answers with the error object itself, 304 when its answers are cached
    with an ETag (services.cached), and any other responses as they are."""
    responses: dict[str, Any] = {str(s): _error(s) for s in errors}
    if ok:
        responses["200"] = {
            "description": "Successful Response",
            "content": {m: {"schema": {"type": "string"}} for m in ok},
        }
    if cached:
        responses["304"] = {"description": _DESCRIPTIONS[304]}
    for status, response in (extra or {}).items():
        responses[str(status)] = {"description": _DESCRIPTIONS.get(status, "OK"), **response}
    return {"responses": responses}


# what the accounts and KOReader routes answer on their own (AccountError, HTTPException)
_ROUTE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/api/auth/login"): (401, 403, 429),
    ("POST", "/api/auth/refresh"): (401,),
    ("POST", "/api/admin/users"): (409,),
    ("GET", "/api/admin/users/{user_id}"): (404,),
    ("PATCH", "/api/admin/users/{user_id}"): (404, 409),
    ("POST", "/api/admin/users/{user_id}/password"): (404,),
    ("GET", "/api/user/me"): (404,),
    ("PUT", "/api/user/me/password"): (403, 404),
    ("DELETE", "/api/user/tokens/{token_id}"): (404,),
    ("POST", "/api/user/favorites"): (404,),
    ("PUT", "/api/user/favorites/{book_id}"): (404,),
    ("GET", "/api/user/progress/{book_id}"): (404,),
    ("PUT", "/api/user/progress/{book_id}"): (404, 409),
    ("POST", "/api/user/lists"): (409,),
    ("GET", "/api/user/lists/{list_id}"): (404,),
    ("PATCH", "/api/user/lists/{list_id}"): (404, 409),
    ("DELETE", "/api/user/lists/{list_id}"): (404,),
    ("POST", "/api/user/lists/{list_id}/books"): (404,),
    ("DELETE", "/api/user/lists/{list_id}/books/{book_id}"): (404,),
    ("PUT", "/api/user/lists/{list_id}/order"): (404,),
}
_KOSYNC_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/users/create"): (402, 403, 502),
    ("GET", "/users/auth"): (401, 502),
    ("PUT", "/syncs/progress"): (401, 403, 502),
    ("GET", "/syncs/progress/{document}"): (401, 403, 502),
}


def _front_statuses(path: str, method: str) -> set[int]:
    """What the auth gate and the accounts dependencies may answer instead of the route."""
    from .accounts.gate import OPEN, SAFE_METHODS

    statuses = {503}  # the accounts database failing while credentials are checked
    if not path.startswith(OPEN) or path.startswith("/api/auth/logout"):
        statuses |= {401, 429}  # wrong credentials, AUTH_REQUIRED, Basic sign-ins throttled
    if method not in SAFE_METHODS:
        statuses.add(403)  # a cookie-authenticated write from another site
    if path.startswith("/api/admin/"):
        statuses.add(403)  # signed in, not an admin (deps.admin_user)
    return statuses


def _add(responses: dict[str, Any], status: int, schema: Mapping[str, Any]) -> None:
    """Document `schema` for `status`; a status some other layer answers in another shape
    accepts either."""
    key = str(status)
    if key not in responses:
        responses[key] = _error(status, schema)
        return
    media = responses[key].setdefault("content", {}).setdefault("application/json", {})
    current = media.get("schema")
    if not current:
        media["schema"] = dict(schema)
    elif current != schema and schema not in current.get("anyOf", []):
        options = current.get("anyOf", [current])
        media["schema"] = {"anyOf": [*options, dict(schema)]}


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    schema.setdefault("components", {}).setdefault("schemas", {}).update(_SCHEMAS)
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            responses: dict[str, Any] = op.setdefault("responses", {})
            key = (method.upper(), path)
            for status in _KOSYNC_ERRORS.get(key, ()):
                _add(responses, status, KOSYNC_ERROR)
            front = _front_statuses(path, method.upper())
            if "requestBody" in op:
                front.add(400)  # a body that cannot be parsed (FastAPI's answer)
            for status in sorted(front | set(_ROUTE_ERRORS.get(key, ()))):
                _add(responses, status, ERROR)
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed schema at the app's openapi_url (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # a copy: FastAPI shares the routes' openapi_extra objects with the schema
            app.openapi_schema = complete(copy.deepcopy(FastAPI.openapi(app)))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
