"""/api/authors, /api/series, /api/tags, /api/publishers, /api/languages with book counts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from ..library import Library
from ..model import Category
from ..openapi import answers
from ..serialize import category, dumps
from ..services import services
from ..textfold import fold

router = APIRouter(prefix="/api", tags=["categories"])


def filtered_categories(
    lib: Library, kind: str, sort: str, order: str | None, q: str | None
) -> list[Category]:
    desc = order == "desc" if order else sort == "count"
    cats = lib.category_list(kind, sort, desc)
    if q and q.strip():
        needle = fold(q.strip())
        cats = [c for c in cats if needle in fold(c.name)]
    return cats


def _endpoint(kind: str) -> None:
    async def handler(
        request: Request,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, Query(ge=1, le=1000)] = 100,
        sort: Literal["name", "count"] = "name",
        order: Literal["asc", "desc"] | None = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        svc = services(request)
        lib = svc.library(request)

        def build() -> bytes:
            cats = filtered_categories(lib, kind, sort, order, q)
            start = (page - 1) * per_page
            return dumps(
                {
                    "items": [category(c) for c in cats[start : start + per_page]],
                    "total": len(cats),
                    "page": page,
                    "per_page": per_page,
                    "pages": max(1, -(-len(cats) // per_page)),
                }
            )

        return svc.cached(request, lib, "application/json", build)

    handler.__name__ = f"list_{kind}"
    router.add_api_route(
        f"/{kind}",
        handler,
        methods=["GET"],
        name=f"list_{kind}",
        openapi_extra=answers(cached=True),
    )


for _kind in ("authors", "series", "tags", "publishers", "languages"):
    _endpoint(_kind)
