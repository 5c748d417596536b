"""/api/books: listing with filters, search, sorting and paging; one book with every field."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from starlette.responses import Response

from .. import query
from ..openapi import answers
from ..serialize import book_detail, book_summary, dumps
from ..services import services
from .params import book_query

router = APIRouter(prefix="/api", tags=["books"])
JSON = "application/json"


@router.get("/books", openapi_extra=answers(cached=True))
async def list_books(
    request: Request, bq: Annotated[query.BookQuery, Depends(book_query)]
) -> Response:
    svc = services(request)
    lib = svc.library(request)

    def build() -> bytes:
        page = query.run(lib, bq)
        return dumps(
            {
                "items": [book_summary(lib, lib.books[i]) for i in page.ids],
                "total": page.total,
                "page": page.page,
                "per_page": page.per_page,
                "pages": page.pages,
                "sort": bq.effective_sort(),
                "order": "desc" if bq.descending() else "asc",
            }
        )

    return svc.cached(request, lib, JSON, build)


@router.get("/books/{book_id}", openapi_extra=answers(404, cached=True))
async def get_book(request: Request, book_id: Annotated[int, Path(ge=0)]) -> Response:
    svc = services(request)
    lib = svc.library(request)
    b = lib.books.get(book_id)
    if b is None:
        raise HTTPException(404, detail={"error": "not_found", "message": f"no book {book_id}"})
    return svc.cached(request, lib, JSON, lambda: dumps(book_detail(lib, b)))
