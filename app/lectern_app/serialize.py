"""JSON shapes of books and categories (the API contract)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from .library import Library
from .model import Book, Category


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def cover_urls(b: Book) -> dict[str, str | None]:
    if not b.has_cover:
        return {"cover_url": None, "thumbnail_url": None}
    v = b.cover_version
    return {
        "cover_url": f"/api/files/cover/{b.id}?v={v}",
        "thumbnail_url": f"/api/files/cover/{b.id}?size=thumbnail&v={v}",
    }


def book_summary(lib: Library, b: Book) -> dict[str, Any]:
    return {
        "id": b.id,
        "title": b.title,
        "authors": lib.author_names(b),
        "series": lib.series_name(b),
        "series_index": b.series_index,
        "tags": lib.tag_names(b),
        "rating": b.rating,
        "publisher": lib.publisher_name(b),
        "languages": lib.language_codes(b),
        "added": b.timestamp,
        "pubdate": b.pubdate,
        "has_cover": b.has_cover,
        **cover_urls(b),
        "formats": [f.fmt for f in b.formats],
    }


def book_detail(lib: Library, b: Book) -> dict[str, Any]:
    d = book_summary(lib, b)
    cols = {c.label: c for c in lib.custom_columns}
    d.update(
        {
            "sort": b.sort,
            "author_sort": b.author_sort,
            "author_ids": list(b.author_ids),
            "series_id": b.series_id,
            "tag_ids": list(b.tag_ids),
            "publisher_id": b.publisher_id,
            "uuid": b.uuid,
            "last_modified": b.last_modified,
            "path": b.path,
            "size": b.size,
            "comments": b.comments,
            "identifiers": dict(sorted(b.identifiers.items())),
            "isbn": b.identifiers.get("isbn", ""),
            "formats": [
                {
                    "format": f.fmt,
                    "size": f.size,
                    "filename": f.filename,
                    "url": f"/api/files/download/{b.id}/{quote(f.fmt.lower())}",
                }
                for f in b.formats
            ],
            "custom_columns": {
                label: {
                    "name": cols[label].name if label in cols else label,
                    "datatype": cols[label].datatype if label in cols else "float",
                    "value": value,
                }
                for label, value in b.custom.items()
            },
        }
    )
    return d


def category(c: Category) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "sort": c.sort, "count": c.count}
