"""Server-rendered web UI (Jinja2): cover grid, book page, search, category pages.

Plain HTML forms and links, no JavaScript needed; a responsive CSS grid for phones.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, Response

from . import query
from .api.categories import filtered_categories
from .api.files import mime_for
from .api.params import book_query
from .library import FILTER_KINDS, Library
from .serialize import cover_urls
from .services import services
from .xmltext import clean

HERE = FsPath(__file__).parent
HTML = "text/html; charset=utf-8"
env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
router = APIRouter(include_in_schema=False)
KINDS = {
    "authors": "Authors",
    "series": "Series",
    "tags": "Tags",
    "publishers": "Publishers",
    "languages": "Languages",
}
_PARAM_OF_KIND = {kind: param for param, kind in FILTER_KINDS.items()}


def _stars(rating: int | None) -> str:
    if not rating:
        return ""
    full, half = divmod(rating, 2)
    return "★" * full + ("½" if half else "")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


env.filters["stars"] = _stars
env.filters["filesize"] = _size
env.globals["kinds"] = KINDS


def render(name: str, **ctx: Any) -> bytes:
    """Every HTML page: metadata and echoed input may hold characters HTML calls parse
    errors (and lone surrogates, which UTF-8 cannot even encode)."""
    return clean(env.get_template(name).render(**ctx)).encode()


def _card(lib: Library, book_id: int) -> dict[str, Any]:
    b = lib.books[book_id]
    return {
        "id": b.id,
        "title": b.title,
        "authors": lib.author_names(b),
        "series": lib.series_name(b),
        "series_index": b.series_index,
        "thumb": cover_urls(b)["thumbnail_url"],
        "rating": b.rating,
    }


def _page_url(request: Request, page: int) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
    params.append(("page", str(page)))
    return f"{request.url.path}?{urlencode(params)}"


@router.get("/")
async def index(request: Request, bq: Annotated[query.BookQuery, Depends(book_query)]) -> Response:
    svc = services(request)
    lib = svc.library(request)

    def build() -> bytes:
        page = query.run(lib, bq)
        heading = "Recently added"
        for param, kind in FILTER_KINDS.items():
            for cid in bq.ids.get(param, []):
                c = lib.categories[kind].get(cid)
                if c is not None:
                    heading = (
                        f"{KINDS[kind].rstrip('s') if kind != 'series' else 'Series'}: {c.name}"
                    )
            for name in bq.names.get(param, []):
                heading = f"{param.title()}: {name}"
        if bq.q:
            heading = f"Search: {bq.q}"
        return render(
            "index.html",
            title=svc.settings.title,
            heading=heading,
            q=bq.q or "",
            books=[_card(lib, i) for i in page.ids],
            page=page,
            sort=bq.effective_sort(),
            prev_url=_page_url(request, page.page - 1) if page.page > 1 else None,
            next_url=_page_url(request, page.page + 1) if page.page < page.pages else None,
        )

    return svc.cached(request, lib, HTML, build)


@router.get("/search")
async def search(request: Request, bq: Annotated[query.BookQuery, Depends(book_query)]) -> Response:
    return await index(request, bq)


@router.get("/book/{book_id}")
async def book(request: Request, book_id: Annotated[int, Path(ge=0)]) -> Response:
    svc = services(request)
    lib = svc.library(request)
    b = lib.books.get(book_id)
    if b is None:
        raise HTTPException(404, detail={"error": "not_found", "message": f"no book {book_id}"})

    def build() -> bytes:
        cats = lib.categories
        return render(
            "book.html",
            title=svc.settings.title,
            b=b,
            authors=[cats["authors"][i] for i in b.author_ids if i in cats["authors"]],
            tags=[cats["tags"][i] for i in b.tag_ids if i in cats["tags"]],
            series=cats["series"].get(b.series_id) if b.series_id is not None else None,
            publisher=cats["publishers"].get(b.publisher_id)
            if b.publisher_id is not None
            else None,
            languages=lib.language_codes(b),
            cover=cover_urls(b),
            formats=[
                {
                    "fmt": f.fmt,
                    "size": f.size,
                    "mime": mime_for(f.fmt),
                    "url": f"/api/files/download/{b.id}/{f.fmt.lower()}",
                }
                for f in b.formats
            ],
            identifiers=sorted(b.identifiers.items()),
        )

    return svc.cached(request, lib, HTML, build)


def _category_page(kind: str) -> None:
    async def handler(
        request: Request,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        sort: Literal["name", "count"] = "name",
        q: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        svc = services(request)
        lib = svc.library(request)
        per_page = 120

        def build() -> bytes:
            cats = filtered_categories(lib, kind, sort, None, q)
            pages = max(1, -(-len(cats) // per_page))
            chunk = cats[(page - 1) * per_page : page * per_page]
            return render(
                "categories.html",
                title=svc.settings.title,
                kind=kind,
                label=KINDS[kind],
                param=_PARAM_OF_KIND[kind] + "_id",
                items=chunk,
                total=len(cats),
                page=page,
                pages=pages,
                sort=sort,
                q=q or "",
                prev_url=_page_url(request, page - 1) if page > 1 else None,
                next_url=_page_url(request, page + 1) if page < pages else None,
            )

        return svc.cached(request, lib, HTML, build)

    handler.__name__ = f"page_{kind}"
    router.add_api_route(f"/{kind}", handler, methods=["GET"], name=f"page_{kind}")


for _kind in KINDS:
    _category_page(_kind)


def error_page(request: Request, status: int, detail: dict[str, Any]) -> Response:
    body = render(
        "error.html",
        title="Lectern",
        status=status,
        message=str(detail.get("message") or detail.get("error") or "error"),
    )
    return HTMLResponse(body, status_code=status)


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
