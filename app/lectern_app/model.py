"""The in-memory picture of a Calibre library: books, categories, custom columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CATEGORY_KINDS = ("authors", "series", "tags", "publishers", "languages")


@dataclass(slots=True)
class Format:
    fmt: str  # upper case, as calibre stores it (EPUB, PDF, ...)
    size: int
    name: str  # file name without extension

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.fmt.lower()}"


@dataclass(slots=True)
class Book:
    id: int
    title: str
    sort: str
    timestamp: str | None  # ISO 8601, when the book was added
    timestamp_epoch: float
    pubdate: str | None
    pubdate_epoch: float
    series_index: float
    author_sort: str
    path: str
    uuid: str
    has_cover: bool
    last_modified: str | None
    last_modified_epoch: float
    author_ids: list[int] = field(default_factory=list)
    series_id: int | None = None
    tag_ids: list[int] = field(default_factory=list)
    publisher_id: int | None = None
    language_ids: list[int] = field(default_factory=list)
    rating: int | None = None  # 0-10 like calibre
    formats: list[Format] = field(default_factory=list)
    identifiers: dict[str, str] = field(default_factory=dict)
    comments: str | None = None
    custom: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return max((f.size for f in self.formats), default=0)

    @property
    def cover_version(self) -> int:
        """The cover's version in URLs, ETags and thumbnail names: calibre's last_modified
        in milliseconds, so two cover changes within one second are two versions."""
        return int(self.last_modified_epoch * 1000)

    def format(self, fmt: str) -> Format | None:
        up = fmt.upper()
        for f in self.formats:
            if f.fmt == up:
                return f
        return None


@dataclass(slots=True)
class Category:
    id: int
    name: str
    sort: str
    book_ids: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.book_ids)


@dataclass(slots=True)
class CustomColumn:
    id: int
    label: str
    name: str
    datatype: str
    is_multiple: bool
    normalized: bool
    display: dict[str, Any] = field(default_factory=dict)
