"""OPDS 1.2 catalog: navigation root, acquisition feeds with RFC 5005 paging, OpenSearch.

Media types follow the spec: navigation feeds are `kind=navigation`, every feed whose
entries are books is `kind=acquisition` (calibre-web labels some of those navigation).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlencode
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, HTTPException, Path, Query, Request
from starlette.responses import Response

from . import query
from .api.categories import filtered_categories
from .api.files import mime_for
from .library import Library
from .model import Book
from .openapi import answers
from .serialize import cover_urls
from .services import services
from .xmltext import clean

# feeds are Atom, never JSON: no application/json 200 in the schema
router = APIRouter(prefix="/opds", tags=["opds"], default_response_class=Response)

ACQ = "application/atom+xml;profile=opds-catalog;kind=acquisition"
NAV = "application/atom+xml;profile=opds-catalog;kind=navigation"
OPENSEARCH = "application/opensearchdescription+xml"
PER_PAGE = 30
Pg = Annotated[int, Query(ge=1, le=1_000_000)]
PerPage = Annotated[int, Query(ge=1, le=200)]

_KINDS = {"authors": "author", "series": "series", "tags": "tag", "publishers": "publisher"}
_TITLES = {"authors": "Authors", "series": "Series", "tags": "Tags", "publishers": "Publishers"}
_ACQ_PAGED = answers(404, ok=[ACQ], cached=True)  # 404: a page past the last


def _now(lib: Library) -> str:
    ts = lib.last_change or lib.loaded_at
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _link(rel: str, href: str, typ: str, title: str | None = None) -> str:
    t = f" title={quoteattr(title)}" if title else ""
    return f"<link rel={quoteattr(rel)} href={quoteattr(href)} type={quoteattr(typ)}{t}/>"


def _feed(
    lib: Library,
    feed_id: str,
    title: str,
    self_href: str,
    kind: str,
    entries: Sequence[str],
    paging: tuple[int, int, int, str] | None = None,  # page, pages, total, base href
    per_page: int = PER_PAGE,
) -> bytes:
    links = [
        _link("self", self_href, kind),
        _link("start", "/opds/", NAV),
        _link("search", "/opds/opensearch.xml", OPENSEARCH, "Search"),
    ]
    extra = ""
    if paging is not None:
        page, pages, total, base = paging
        sep = "&" if "?" in base else "?"

        def at(p: int) -> str:
            return f"{base}{sep}page={p}"

        links.append(_link("first", at(1), kind))
        links.append(_link("last", at(pages), kind))
        if page > 1:
            links.append(_link("previous", at(min(page - 1, pages)), kind))
        if page < pages:
            links.append(_link("next", at(page + 1), kind))
        extra = (
            f"<opensearch:totalResults>{total}</opensearch:totalResults>"
            f"<opensearch:itemsPerPage>{per_page}</opensearch:itemsPerPage>"
            f"<opensearch:startIndex>{(page - 1) * per_page + 1}</opensearch:startIndex>"
        )
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/terms/"'
        ' xmlns:opds="http://opds-spec.org/2010/catalog"'
        ' xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
        f"<id>{escape(feed_id)}</id><title>{escape(title)}</title>"
        f"<updated>{_now(lib)}</updated>"
        "<author><name>Lectern</name></author>"
    )
    # metadata and echoed search terms may hold characters XML forbids
    return clean(head + "".join(links) + extra + "".join(entries) + "</feed>").encode()


def _nav_entry(lib: Library, entry_id: str, title: str, href: str, typ: str, text: str) -> str:
    return (
        f"<entry><title>{escape(title)}</title><id>{escape(entry_id)}</id>"
        f"<updated>{_now(lib)}</updated>"
        f'<content type="text">{escape(text)}</content>'
        f"{_link('subsection', href, typ)}</entry>"
    )


def book_entry(lib: Library, b: Book) -> str:
    parts = [
        f"<entry><title>{escape(b.title)}</title><id>urn:uuid:{escape(b.uuid)}</id>",
        f"<updated>{b.last_modified or _now(lib)}</updated>",
    ]
    parts += [f"<author><name>{escape(a)}</name></author>" for a in lib.author_names(b)]
    parts += [f"<dc:language>{escape(code)}</dc:language>" for code in lib.language_codes(b)]
    pub = lib.publisher_name(b)
    if pub:
        parts.append(f"<dc:publisher>{escape(pub)}</dc:publisher>")
    if b.pubdate:
        parts.append(f"<dc:issued>{b.pubdate[:10]}</dc:issued>")
    if b.timestamp:
        parts.append(f"<published>{b.timestamp}</published>")
    for key, val in sorted(b.identifiers.items()):
        ident = f"urn:isbn:{val}" if key == "isbn" else f"{key}:{val}"
        parts.append(f"<dc:identifier>{escape(ident)}</dc:identifier>")
    for t in lib.tag_names(b):
        parts.append(
            f'<category scheme="http://lectern/tags" term={quoteattr(t)} label={quoteattr(t)}/>'
        )
    series = lib.series_name(b)
    summary = f"{series} [{b.series_index:g}]" if series else ""
    if summary:
        parts.append(f"<summary>{escape(summary)}</summary>")
    if b.comments:
        parts.append(f'<content type="html">{escape(b.comments)}</content>')
    urls = cover_urls(b)
    if urls["cover_url"] and urls["thumbnail_url"]:
        parts.append(_link("http://opds-spec.org/image", urls["cover_url"], "image/jpeg"))
        parts.append(
            _link("http://opds-spec.org/image/thumbnail", urls["thumbnail_url"], "image/jpeg")
        )
    for f in b.formats:
        parts.append(
            _link(
                "http://opds-spec.org/acquisition",
                f"/api/files/download/{b.id}/{f.fmt.lower()}",
                mime_for(f.fmt).split(";")[0],
                f.fmt,
            )
        )
    parts.append(_link("alternate", f"/book/{b.id}", "text/html"))
    parts.append("</entry>")
    return "".join(parts)


def _acquisition(
    request: Request, feed_id: str, title: str, base: str, bq: query.BookQuery
) -> Response:
    svc = services(request)
    lib = svc.library(request)

    def build() -> bytes:
        page = query.run(lib, bq)
        if bq.page > page.pages and page.total:
            raise HTTPException(404, detail={"error": "not_found", "message": "no such page"})
        self_href = f"{base}{'&' if '?' in base else '?'}page={bq.page}"
        return _feed(
            lib,
            feed_id,
            title,
            self_href,
            ACQ,
            [book_entry(lib, lib.books[i]) for i in page.ids],
            (page.page, page.pages, page.total, base),
            bq.per_page,
        )

    return svc.cached(request, lib, ACQ, build)


def _base(path: str, per_page: int) -> str:
    return path if per_page == PER_PAGE else f"{path}?per_page={per_page}"


@router.get("/", openapi_extra=answers(ok=[NAV], cached=True))
async def root(request: Request) -> Response:
    svc = services(request)
    lib = svc.library(request)

    def build() -> bytes:
        entries = [
            _nav_entry(
                lib,
                "lectern:recent",
                "Recently added",
                "/opds/recent",
                ACQ,
                f"{len(lib.books)} books, newest first",
            ),
            _nav_entry(
                lib, "lectern:titles", "By title", "/opds/titles", ACQ, "All books by title"
            ),
        ]
        for kind, label in _TITLES.items():
            n = len(lib.category_list(kind, "name", False))
            entries.append(
                _nav_entry(lib, f"lectern:{kind}", label, f"/opds/{kind}", NAV, f"{n} {kind}")
            )
        return _feed(lib, "lectern:root", svc.settings.title, "/opds/", NAV, entries)

    return svc.cached(request, lib, NAV, build)


@router.get("/recent", openapi_extra=_ACQ_PAGED)
async def recent(request: Request, page: Pg = 1, per_page: PerPage = PER_PAGE) -> Response:
    bq = query.BookQuery(page=page, per_page=per_page, sort="added", order="desc")
    return _acquisition(
        request, "lectern:recent", "Recently added", _base("/opds/recent", per_page), bq
    )


@router.get("/titles", openapi_extra=_ACQ_PAGED)
async def titles(request: Request, page: Pg = 1, per_page: PerPage = PER_PAGE) -> Response:
    bq = query.BookQuery(page=page, per_page=per_page, sort="title", order="asc")
    return _acquisition(request, "lectern:titles", "By title", _base("/opds/titles", per_page), bq)


@router.get("/search", openapi_extra=_ACQ_PAGED)
async def search(
    request: Request, q: Annotated[str, Query(max_length=500)] = "", page: Pg = 1
) -> Response:
    bq = query.BookQuery(page=page, per_page=PER_PAGE, q=q)
    base = "/opds/search?" + urlencode({"q": q})
    return _acquisition(request, f"lectern:search:{q}", f"Search: {q}", base, bq)


@router.get("/opensearch.xml", openapi_extra=answers(ok=[OPENSEARCH]))
async def opensearch(request: Request) -> Response:
    svc = services(request)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<OpenSearchDescription xmlns="http://a9.com/-/spec/opensearch/1.1/">'
        f"<ShortName>{escape(svc.settings.title)}</ShortName>"
        "<Description>Search the library by title, author, series, tag</Description>"
        "<InputEncoding>UTF-8</InputEncoding><OutputEncoding>UTF-8</OutputEncoding>"
        f'<Url type="{ACQ}" template="/opds/search?q={{searchTerms}}"/>'
        '<Url type="application/atom+xml" template="/opds/search?q={searchTerms}"/>'
        "</OpenSearchDescription>"
    )
    return Response(clean(body), media_type=OPENSEARCH)


@router.get("/{kind}", openapi_extra=answers(404, ok=[NAV], cached=True))
async def category_nav(
    request: Request,
    kind: Literal["authors", "series", "tags", "publishers"],
    page: Pg = 1,
) -> Response:
    svc = services(request)
    lib = svc.library(request)
    per_page = 100

    def build() -> bytes:
        cats = filtered_categories(lib, kind, "name", None, None)
        pages = max(1, -(-len(cats) // per_page))
        if page > pages:
            raise HTTPException(404, detail={"error": "not_found", "message": "no such page"})
        chunk = cats[(page - 1) * per_page : page * per_page]
        entries = [
            _nav_entry(
                lib,
                f"lectern:{kind}:{c.id}",
                c.name,
                f"/opds/{kind}/{c.id}",
                ACQ,
                f"{c.count} book{'s' if c.count != 1 else ''}",
            )
            for c in chunk
        ]
        return _feed(
            lib,
            f"lectern:{kind}",
            _TITLES[kind],
            f"/opds/{kind}?page={page}",
            NAV,
            entries,
            (page, pages, len(cats), f"/opds/{kind}"),
            per_page,
        )

    return svc.cached(request, lib, NAV, build)


@router.get("/{kind}/{cat_id}", openapi_extra=_ACQ_PAGED)
async def category_books(
    request: Request,
    kind: Literal["authors", "series", "tags", "publishers"],
    cat_id: Annotated[int, Path(ge=0)],
    page: Pg = 1,
) -> Response:
    lib = services(request).library(request)
    cat = lib.categories[kind].get(cat_id)
    if cat is None:
        raise HTTPException(404, detail={"error": "not_found", "message": f"no such {kind}"})
    sort = "series" if kind == "series" else "title"
    bq = query.BookQuery(
        page=page, per_page=PER_PAGE, sort=sort, order="asc", ids={_KINDS[kind]: [cat_id]}
    )
    return _acquisition(request, f"lectern:{kind}:{cat_id}", cat.name, f"/opds/{kind}/{cat_id}", bq)
