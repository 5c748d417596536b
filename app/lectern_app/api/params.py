"""Query parameters shared by the JSON API, OPDS and the web UI."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from ..query import BookQuery

SortName = Literal[
    "added", "title", "author", "series", "rating", "pubdate", "id", "modified", "relevance"
]
Order = Literal["asc", "desc"]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
PerPage = Annotated[int, Query(ge=1, le=200)]
Names = Annotated[list[str], Query(max_length=200)]
Ids = Annotated[list[int], Query()]


def book_query(
    page: Page = 1,
    per_page: PerPage = 30,
    sort: SortName | None = None,
    order: Order | None = None,
    q: Annotated[str | None, Query(max_length=500)] = None,
    author: Names = [],  # noqa: B006 - FastAPI copies defaults
    series: Names = [],  # noqa: B006
    tag: Names = [],  # noqa: B006
    publisher: Names = [],  # noqa: B006
    language: Names = [],  # noqa: B006
    format: Names = [],  # noqa: B006
    author_id: Ids = [],  # noqa: B006
    series_id: Ids = [],  # noqa: B006
    tag_id: Ids = [],  # noqa: B006
    publisher_id: Ids = [],  # noqa: B006
    language_id: Ids = [],  # noqa: B006
    rating: Annotated[float | None, Query(ge=0, le=5)] = None,
) -> BookQuery:
    """`rating` is a minimum in stars (0-5; calibre stores 0-10)."""
    return BookQuery(
        page=page,
        per_page=per_page,
        sort=sort,
        order=order,
        q=q,
        names={
            "author": author,
            "series": series,
            "tag": tag,
            "publisher": publisher,
            "language": language,
        },
        ids={
            "author": author_id,
            "series": series_id,
            "tag": tag_id,
            "publisher": publisher_id,
            "language": language_id,
        },
        formats=format,
        min_rating=rating,
    )
