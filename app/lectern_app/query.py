"""Book listing: filters, search, sorting and paging, shared by the API, OPDS and the web UI."""

from __future__ import annotations

from dataclasses import dataclass, field

from .library import FILTER_KINDS, Library

DESC_BY_DEFAULT = {"added", "rating", "pubdate", "modified", "relevance"}
SORTS = ("added", "title", "author", "series", "rating", "pubdate", "id", "modified", "relevance")


@dataclass(slots=True)
class BookQuery:
    page: int = 1
    per_page: int = 30
    sort: str | None = None  # None: relevance with q, else added
    order: str | None = None  # asc|desc; None: the sort's natural direction
    q: str | None = None
    names: dict[str, list[str]] = field(default_factory=dict)  # author/series/... by name
    ids: dict[str, list[int]] = field(default_factory=dict)  # author/series/... by id
    formats: list[str] = field(default_factory=list)
    min_rating: float | None = None  # stars, 0-5

    def effective_sort(self) -> str:
        if self.sort:
            return self.sort
        return "relevance" if self.q and self.q.strip() else "added"

    def descending(self) -> bool:
        if self.order in ("asc", "desc"):
            return self.order == "desc"
        return self.effective_sort() in DESC_BY_DEFAULT


@dataclass(slots=True)
class Page:
    ids: list[int]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def run(lib: Library, bq: BookQuery) -> Page:
    allowed: set[int] | None = None

    def narrow(s: set[int]) -> None:
        nonlocal allowed
        allowed = s if allowed is None else allowed & s

    for param, kind in FILTER_KINDS.items():
        for name in bq.names.get(param, []):
            cid = lib.category_id(kind, name)
            narrow(lib.filter_ids(kind, [cid]) if cid is not None else set())
        if bq.ids.get(param):
            narrow(lib.filter_ids(kind, bq.ids[param]))
    for fmt in bq.formats:
        narrow(lib.formats.get(fmt.upper(), set()))
    if bq.min_rating is not None and bq.min_rating > 0:
        threshold = bq.min_rating * 2
        narrow({b.id for b in lib.books.values() if (b.rating or 0) >= threshold})

    sort = bq.effective_sort()
    desc = bq.descending()
    ordered: list[int]
    if bq.q and bq.q.strip():
        hits = lib.search(bq.q)
        if sort == "relevance":
            ordered = [h.book_id for h in hits]
            if not desc:
                ordered.reverse()
            if allowed is not None:
                ordered = [i for i in ordered if i in allowed]
        else:
            found = {h.book_id for h in hits}
            narrow(found)
            ordered = _filtered(lib.order(sort, desc), allowed)
    else:
        key = "added" if sort == "relevance" else sort
        ordered = _filtered(lib.order(key, desc), allowed)
    start = (bq.page - 1) * bq.per_page
    return Page(ordered[start : start + bq.per_page], len(ordered), bq.page, bq.per_page)


def _filtered(order: list[int], allowed: set[int] | None) -> list[int]:
    if allowed is None:
        return order
    return [i for i in order if i in allowed]
