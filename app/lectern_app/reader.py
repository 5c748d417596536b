"""Read Calibre's metadata.db strictly read-only.

* `file:...?mode=ro` URI (never `immutable`: the file changes under us), a busy timeout,
  `PRAGMA query_only`.
* One short read transaction that only runs `fetchall()`s; all Python work happens after
  COMMIT so Calibre's writer is held off for milliseconds at most.
* Works with the rollback journal and with WAL. Uses plain tables only, never calibre's
  views or custom SQL functions (title_sort, ...), which exist only inside calibre.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .model import Book, Category, CustomColumn, Format

UNDEFINED_YEAR = 101  # calibre's UNDEFINED_DATE is 0101-01-01


class LibraryError(Exception):
    """The library cannot be read; `kind` is missing|locked|corrupt|invalid."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class RawLibrary:
    library_id: str
    books: dict[int, Book]
    authors: dict[int, Category]
    series: dict[int, Category]
    tags: dict[int, Category]
    publishers: dict[int, Category]
    languages: dict[int, Category]
    custom_columns: list[CustomColumn]
    data_version: int


def connect(db_path: Path, busy_timeout: float) -> sqlite3.Connection:
    if not db_path.is_file():
        raise LibraryError("missing", f"{db_path} does not exist")
    uri = f"file:{quote(str(db_path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only=1")
    except sqlite3.Error as e:
        raise classify(e, db_path) from e
    return conn


def classify(e: sqlite3.Error, db_path: Path) -> LibraryError:
    msg = str(e)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        return LibraryError("locked", f"metadata.db is locked: {msg}")
    if "unable to open" in low and not db_path.exists():
        return LibraryError("missing", f"{db_path} does not exist")
    if "no such table" in low or "no such column" in low:
        return LibraryError("invalid", f"not a calibre library: {msg}")
    return LibraryError("corrupt", f"metadata.db cannot be read: {msg}")


def _iso(value: Any) -> tuple[str | None, float]:
    if not value:
        return None, 0.0
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return None, 0.0
    if dt.year <= UNDEFINED_YEAR:
        return None, 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        epoch = dt.timestamp()
    except (OverflowError, OSError, ValueError):
        epoch = 0.0
    return dt.isoformat(timespec="seconds"), epoch


_Q_BOOKS = (
    "SELECT id, title, sort, timestamp, pubdate, series_index, author_sort, path, uuid,"
    " has_cover, last_modified FROM books"
)


def fetch_all(conn: sqlite3.Connection) -> dict[str, list[Any]]:
    """Every row we need, inside one short read transaction."""
    q: dict[str, str] = {
        "data_version": "PRAGMA data_version",
        "library_id": "SELECT uuid FROM library_id LIMIT 1",
        "books": _Q_BOOKS,
        "authors": "SELECT id, name, sort FROM authors",
        "a_link": "SELECT book, author FROM books_authors_link ORDER BY id",
        "series": "SELECT id, name, sort FROM series",
        "s_link": "SELECT book, series FROM books_series_link ORDER BY id",
        "tags": "SELECT id, name FROM tags",
        "t_link": "SELECT book, tag FROM books_tags_link ORDER BY id",
        "publishers": "SELECT id, name, sort FROM publishers",
        "p_link": "SELECT book, publisher FROM books_publishers_link ORDER BY id",
        "languages": "SELECT id, lang_code FROM languages",
        "l_link": "SELECT book, lang_code FROM books_languages_link ORDER BY item_order, id",
        "r_link": (
            "SELECT l.book, r.rating FROM books_ratings_link l"
            " JOIN ratings r ON r.id = l.rating ORDER BY l.id"
        ),
        "data": "SELECT book, format, uncompressed_size, name FROM data ORDER BY id",
        "identifiers": "SELECT book, type, val FROM identifiers ORDER BY id",
        "comments": "SELECT book, text FROM comments",
        "cc": (
            "SELECT id, label, name, datatype, is_multiple, normalized, display"
            " FROM custom_columns WHERE mark_for_delete = 0 ORDER BY id"
        ),
    }
    out: dict[str, list[Any]] = {}
    conn.execute("BEGIN")
    try:
        for key, sql in q.items():
            out[key] = conn.execute(sql).fetchall()
        for cid, _label, _n, datatype, _mult, normalized, _d in out["cc"]:
            if datatype == "composite":
                continue
            if normalized:
                extra = ", l.extra" if datatype == "series" else ""
                out[f"cc{cid}"] = conn.execute(
                    f"SELECT l.book, v.value{extra} FROM books_custom_column_{int(cid)}_link l"
                    f" JOIN custom_column_{int(cid)} v ON v.id = l.value ORDER BY l.id"
                ).fetchall()
            else:
                out[f"cc{cid}"] = conn.execute(
                    f"SELECT book, value FROM custom_column_{int(cid)}"
                ).fetchall()
    finally:
        conn.execute("COMMIT")
    return out


def _categories(rows: list[Any], has_sort: bool = True) -> dict[int, Category]:
    if has_sort:
        return {r[0]: Category(r[0], r[1], r[2] or r[1]) for r in rows}
    return {r[0]: Category(r[0], r[1], r[1]) for r in rows}


def build(rows: dict[str, list[Any]]) -> RawLibrary:
    books: dict[int, Book] = {}
    for bid, title, sort, ts, pub, sidx, asort, path, buuid, cover, lm in rows["books"]:
        t_iso, t_ep = _iso(ts)
        p_iso, p_ep = _iso(pub)
        m_iso, m_ep = _iso(lm)
        books[bid] = Book(
            id=bid,
            title=title or "Unknown",
            sort=sort or title or "",
            timestamp=t_iso,
            timestamp_epoch=t_ep,
            pubdate=p_iso,
            pubdate_epoch=p_ep,
            series_index=float(sidx if sidx is not None else 1.0),
            author_sort=asort or "",
            path=path or "",
            uuid=buuid or "",
            has_cover=bool(cover),
            last_modified=m_iso,
            last_modified_epoch=m_ep,
        )
    authors = _categories(rows["authors"])
    series = _categories(rows["series"])
    tags = _categories(rows["tags"], has_sort=False)
    publishers = _categories(rows["publishers"])
    languages = _categories(rows["languages"], has_sort=False)

    def link(key: str, cats: dict[int, Category], attr: str, multi: bool) -> None:
        for book_id, cat_id in rows[key]:
            b = books.get(book_id)
            c = cats.get(cat_id)
            if b is None or c is None:
                continue
            if multi:
                getattr(b, attr).append(cat_id)
            else:
                if getattr(b, attr) is not None:
                    continue
                setattr(b, attr, cat_id)
            c.book_ids.append(book_id)

    link("a_link", authors, "author_ids", True)
    link("s_link", series, "series_id", False)
    link("t_link", tags, "tag_ids", True)
    link("p_link", publishers, "publisher_id", False)
    link("l_link", languages, "language_ids", True)
    for book_id, rating in rows["r_link"]:
        b = books.get(book_id)
        if b is not None and b.rating is None and rating is not None:
            b.rating = int(rating)
    for book_id, fmt, size, name in rows["data"]:
        b = books.get(book_id)
        if b is not None:
            b.formats.append(Format(str(fmt).upper(), int(size or 0), name))
    for book_id, typ, val in rows["identifiers"]:
        b = books.get(book_id)
        if b is not None:
            b.identifiers[typ] = val
    for book_id, text in rows["comments"]:
        b = books.get(book_id)
        if b is not None and text:
            b.comments = text
    custom = _custom(rows, books)
    lib_id = rows["library_id"][0][0] if rows["library_id"] else ""
    return RawLibrary(
        library_id=lib_id,
        books=books,
        authors=authors,
        series=series,
        tags=tags,
        publishers=publishers,
        languages=languages,
        custom_columns=custom,
        data_version=int(rows["data_version"][0][0]),
    )


def _custom(rows: dict[str, list[Any]], books: dict[int, Book]) -> list[CustomColumn]:
    cols: list[CustomColumn] = []
    for cid, label, name, datatype, mult, normalized, display in rows["cc"]:
        try:
            disp = json.loads(display) if display else {}
        except ValueError:
            disp = {}
        col = CustomColumn(cid, label, name, datatype, bool(mult), bool(normalized), disp)
        cols.append(col)
        for row in rows.get(f"cc{cid}", []):
            b = books.get(row[0])
            if b is None:
                continue
            value: Any = row[1]
            if datatype == "bool":
                value = bool(value) if value is not None else None
            elif datatype == "datetime":
                value = _iso(value)[0]
            elif datatype == "series":
                b.custom[label] = value
                b.custom[f"{label}_index"] = float(row[2]) if row[2] is not None else 1.0
                continue
            if col.is_multiple:
                b.custom.setdefault(label, []).append(value)
            else:
                b.custom[label] = value
    return cols


def load(library_path: Path, busy_timeout: float = 5.0) -> RawLibrary:
    """Read the whole library once with a fresh connection."""
    db = library_path / "metadata.db"
    conn = connect(db, busy_timeout)
    try:
        return load_with(conn, db)
    finally:
        conn.close()


def load_with(conn: sqlite3.Connection, db: Path) -> RawLibrary:
    try:
        rows = fetch_all(conn)
    except sqlite3.Error as e:
        raise classify(e, db) from e
    return build(rows)
