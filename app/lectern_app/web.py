"""Server-rendered web UI (placeholder until step 3)."""

from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response


def mount(app: FastAPI) -> None:
    return None


def error_page(request: Request, status: int, detail: dict[str, Any]) -> Response:
    return JSONResponse({"detail": detail}, status)
