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
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .model import Book, Category, CustomColumn, Format

log = logging.getLogger("lectern.library")

UNDEFINED_YEAR = 101  # calibre's UNDEFINED_DATE is 0101-01-01


class LibraryError(Exception):
    """The library cannot be read; `kind` is missing|locked|io|corrupt|invalid."""

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
    lm_raw: dict[int, str] = field(default_factory=dict)  # books.last_modified as stored
    max_lm: str = ""  # the largest last_modified (calibre writes them in one format)
    id_total: int = 0  # sum of book ids: with the count, tells whether books were removed
    name_rows: dict[str, list[Any]] = field(default_factory=dict)  # category tables
    name_sigs: dict[str, Any] = field(default_factory=dict)  # a fingerprint per category table
    name_state: dict[str, str] = field(default_factory=dict)  # same | added | changed
    incremental: bool = False  # built from a previous snapshot plus changed books
    names_unchanged: bool = False  # no category renamed or removed (additions are fine)
    changed: int = 0  # books (re)read from the database
    changed_ids: frozenset[int] = frozenset()  # read anew (new or edited)
    removed_ids: frozenset[int] = frozenset()


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
    if "disk i/o error" in low:
        # EIO from the file system (a network mount whose server went away), not a
        # verdict on the file: transient, retried like a lock
        return LibraryError("io", f"metadata.db could not be read (I/O error): {msg}")
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


_NAME_TABLES = {
    "authors": "SELECT id, name, sort FROM authors",
    "series": "SELECT id, name, sort FROM series",
    "tags": "SELECT id, name FROM tags",
    "publishers": "SELECT id, name, sort FROM publishers",
    "languages": "SELECT id, lang_code FROM languages",
    "cc": (
        "SELECT id, label, name, datatype, is_multiple, normalized, display"
        " FROM custom_columns WHERE mark_for_delete = 0 ORDER BY id"
    ),
}


def _agg(name: str, sort: str) -> str:
    # cheap whole-table fingerprint: counts, lengths and id-weighted characters; a rename
    # that keeps all of them is caught by the full re-read after a quiet period
    return (
        f"count(*), max(id), total(length({name})), total(length({sort})),"
        f" total(unicode({name}) * id), total(unicode(substr({name}, -1)) * id),"
        f" total(unicode(substr({name}, (length({name}) + 1) / 2)) * id)"
    )


_SIG = {
    "authors": _agg("name", "coalesce(sort, '')"),
    "series": _agg("name", "coalesce(sort, '')"),
    "tags": _agg("name", "''"),
    "publishers": _agg("name", "coalesce(sort, '')"),
    "languages": _agg("lang_code", "''"),
    "cc": "group_concat(id || char(31) || label || char(31) || name || char(31) || datatype"
    " || char(31) || is_multiple || char(31) || mark_for_delete, char(30))",
}
_SIG_TABLE = {k: k if k != "cc" else "custom_columns" for k in _SIG}
# per-book tables; {where} narrows them to changed books on an incremental load
_BOOK_TABLES = {
    "books": _Q_BOOKS + " {where_id}",
    "a_link": "SELECT book, author FROM books_authors_link {where} ORDER BY id",
    "s_link": "SELECT book, series FROM books_series_link {where} ORDER BY id",
    "t_link": "SELECT book, tag FROM books_tags_link {where} ORDER BY id",
    "p_link": "SELECT book, publisher FROM books_publishers_link {where} ORDER BY id",
    "l_link": "SELECT book, lang_code FROM books_languages_link {where} ORDER BY item_order, id",
    "r_link": (
        "SELECT l.book, r.rating FROM books_ratings_link l"
        " JOIN ratings r ON r.id = l.rating {where_l} ORDER BY l.id"
    ),
    "data": "SELECT book, format, uncompressed_size, name FROM data {where} ORDER BY id",
    "identifiers": "SELECT book, type, val FROM identifiers {where} ORDER BY id",
    "comments": "SELECT book, text FROM comments {where}",
}
INCREMENTAL_MAX = 2000  # more changed books than this: read everything


def fetch_all(conn: sqlite3.Connection, previous: RawLibrary | None = None) -> dict[str, list[Any]]:
    """Every row we need, inside one short read transaction.

    With a `previous` snapshot of the same library, only books whose last_modified
    changed (calibre bumps it on every edit of a book) are read in full; the small
    category tables are always read whole, so renames are never missed.
    """
    out: dict[str, list[Any]] = {}
    conn.execute("BEGIN")
    try:
        out["data_version"] = conn.execute("PRAGMA data_version").fetchall()
        out["library_id"] = conn.execute("SELECT uuid FROM library_id LIMIT 1").fetchall()
        same_lib = (
            previous is not None
            and bool(out["library_id"])
            and out["library_id"][0][0] == previous.library_id
        )
        sigs: dict[str, Any] = {}
        state: dict[str, str] = {}
        for key, sql in _NAME_TABLES.items():
            table = _SIG_TABLE[key]
            sig = tuple(conn.execute(f"SELECT {_SIG[key]} FROM {table}").fetchone())
            sigs[key] = sig
            old = previous.name_sigs.get(key) if same_lib and previous is not None else None
            if old is None or previous is None:
                state[key] = "changed"
                out[key] = conn.execute(sql).fetchall()
                continue
            if sig == old:
                state[key] = "same"
                out[key] = previous.name_rows[key]
                continue
            last = max((r[0] for r in previous.name_rows[key]), default=0)
            before = tuple(
                conn.execute(f"SELECT {_SIG[key]} FROM {table} WHERE id <= ?", (last,)).fetchone()
            )
            if key != "cc" and before == old:  # only rows with new (higher) ids: read those
                table_sql = sql.replace(" ORDER BY id", "")
                out[key] = (
                    previous.name_rows[key]
                    + conn.execute(
                        f"SELECT * FROM ({table_sql}) WHERE id > ? ORDER BY id", (last,)
                    ).fetchall()
                )
                state[key] = "added"
                continue
            out[key] = conn.execute(sql).fetchall()
            state[key] = "changed"
            # rows added or removed, but none renamed: memberships can be patched
            rows_before = {r[0]: r for r in previous.name_rows[key]}
            if all(rows_before.get(r[0], r) == r for r in out[key]):
                state[key] = "added"
        out["sigs"] = [sigs]
        out["state"] = [state]
        changed: list[int] | None = None
        removed: list[int] = []
        if same_lib and previous is not None and state["cc"] == "same":
            rows = conn.execute(
                "SELECT id, last_modified FROM books WHERE last_modified > ?", (previous.max_lm,)
            ).fetchall()
            cnt, tot = conn.execute("SELECT count(*), total(id) FROM books").fetchone()
            new_ids = [bid for bid, _m in rows if bid not in previous.books]
            if cnt == len(previous.books) + len(new_ids) and int(tot) == previous.id_total + sum(
                new_ids
            ):
                changed = [bid for bid, _m in rows]
            else:  # books were removed (or dates went backwards): compare every book
                stamps = conn.execute("SELECT id, last_modified FROM books").fetchall()
                lm = previous.lm_raw
                changed = [bid for bid, m in stamps if lm.get(bid) != m]
                alive = {bid for bid, _m in stamps}
                removed = [bid for bid in previous.books if bid not in alive]
            if len(changed) > INCREMENTAL_MAX:
                changed = None
        out["removed"] = [(r,) for r in removed]
        if changed is None:
            fmt = {"where": "", "where_id": "", "where_l": ""}
            for key, sql in _BOOK_TABLES.items():
                out[key] = conn.execute(sql.format(**fmt)).fetchall()
            if previous is not None:
                _reread_names(conn, out, state)
        else:
            out["changed"] = [(c,) for c in changed]
            for key in _BOOK_TABLES:
                out[key] = []
            for i in range(0, len(changed), 500):
                chunk = changed[i : i + 500]
                marks = ",".join("?" * len(chunk))
                fmt = {
                    "where": f"WHERE book IN ({marks})",
                    "where_id": f"WHERE id IN ({marks})",
                    "where_l": f"WHERE l.book IN ({marks})",
                }
                for key, sql in _BOOK_TABLES.items():
                    out[key] += conn.execute(sql.format(**fmt), chunk).fetchall()
            if previous is not None:
                _verify_linked_names(conn, out, state, previous)
        for cid, _label, _n, datatype, _mult, normalized, _d in out["cc"]:
            if datatype == "composite":
                continue
            if normalized:
                extra = ", l.extra" if datatype == "series" else ""
                sql = (
                    f"SELECT l.book, v.value{extra} FROM books_custom_column_{int(cid)}_link l"
                    f" JOIN custom_column_{int(cid)} v ON v.id = l.value"
                )
                where, order = " WHERE l.book IN ({})", " ORDER BY l.id"
            else:
                sql = f"SELECT book, value FROM custom_column_{int(cid)}"
                where, order = " WHERE book IN ({})", ""
            if changed is None:
                out[f"cc{cid}"] = conn.execute(sql + order).fetchall()
            else:
                out[f"cc{cid}"] = []
                for i in range(0, len(changed), 500):
                    chunk = changed[i : i + 500]
                    q = sql + where.format(",".join("?" * len(chunk))) + order
                    out[f"cc{cid}"] += conn.execute(q, chunk).fetchall()
    finally:
        conn.execute("COMMIT")
    return out


_LINKS = {
    "authors": "a_link",
    "series": "s_link",
    "tags": "t_link",
    "publishers": "p_link",
    "languages": "l_link",
}


def _verify_linked_names(
    conn: sqlite3.Connection, out: dict[str, list[Any]], state: dict[str, str], previous: RawLibrary
) -> None:
    """Re-read the category rows the changed books link to; a table whose fingerprint
    matched but whose rows differ is read whole.

    The fingerprint misses renames that keep lengths and sampled letters ("Émile Zola" ->
    "Émile zola"). calibre bumps last_modified of every book of a renamed (or merged, or
    re-sorted) item, so those books are among the changed ones and their links name the
    rows to check: a few rows instead of whole tables.
    """
    for key, link in _LINKS.items():
        if state[key] == "changed":
            continue
        ids = sorted({r[1] for r in out[link]})
        known = getattr(previous, key)
        sql = _NAME_TABLES[key]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"{sql} WHERE id IN ({marks})", chunk).fetchall()
            if any(_renamed(known.get(r[0]), r, key in _SORTED) for r in rows):
                out[key] = conn.execute(sql).fetchall()
                state[key] = "changed"
                break


def _renamed(old: Category | None, row: Any, has_sort: bool) -> bool:
    if old is None:  # a row added since the previous snapshot
        return False
    name: str = row[1]
    sort: str = (row[2] or name) if has_sort else name
    return old.name != name or old.sort != sort


def _reread_names(
    conn: sqlite3.Connection, out: dict[str, list[Any]], state: dict[str, str]
) -> None:
    """Every book is read again: read the category tables too, fingerprint or not (a
    rename the fingerprint missed may touch more books than an incremental load reads)."""
    for key, sql in _NAME_TABLES.items():
        if state[key] == "changed":
            continue
        rows = conn.execute(sql).fetchall()
        if rows != out[key]:
            state[key] = "changed"
        out[key] = rows


def _categories(rows: list[Any], has_sort: bool = True) -> dict[int, Category]:
    if has_sort:
        return {r[0]: Category(r[0], r[1], r[2] or r[1]) for r in rows}
    return {r[0]: Category(r[0], r[1], r[1]) for r in rows}


def build(rows: dict[str, list[Any]], previous: RawLibrary | None = None) -> RawLibrary:
    incremental = previous is not None and "changed" in rows
    fresh: dict[int, Book] = {}
    lm_raw: dict[int, str] = {}
    for bid, title, sort, ts, pub, sidx, asort, path, buuid, cover, lm in rows["books"]:
        t_iso, t_ep = _iso(ts)
        p_iso, p_ep = _iso(pub)
        m_iso, m_ep = _iso(lm)
        lm_raw[bid] = lm
        fresh[bid] = Book(
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

    def link(key: str, attr: str, multi: bool) -> None:
        for book_id, cat_id in rows[key]:
            b = fresh.get(book_id)
            if b is None:
                continue
            if multi:
                getattr(b, attr).append(cat_id)
            elif getattr(b, attr) is None:
                setattr(b, attr, cat_id)

    link("a_link", "author_ids", True)
    link("s_link", "series_id", False)
    link("t_link", "tag_ids", True)
    link("p_link", "publisher_id", False)
    link("l_link", "language_ids", True)
    for book_id, rating in rows["r_link"]:
        b = fresh.get(book_id)
        if b is not None and b.rating is None and rating is not None:
            b.rating = int(rating)
    for book_id, fmt, size, name in rows["data"]:
        b = fresh.get(book_id)
        if b is not None:
            b.formats.append(Format(str(fmt).upper(), int(size or 0), name))
    for book_id, typ, val in rows["identifiers"]:
        b = fresh.get(book_id)
        if b is not None:
            b.identifiers[typ] = val
    for book_id, text in rows["comments"]:
        b = fresh.get(book_id)
        if b is not None and text:
            b.comments = text
    custom = _custom(rows, fresh)

    state: dict[str, str] = rows["state"][0]
    removed = frozenset(r[0] for r in rows.get("removed", []))
    cats_by_kind: dict[str, dict[int, Category]] = {}
    if incremental:
        assert previous is not None
        books = dict(previous.books)
        lm_all = dict(previous.lm_raw)
        for bid in removed:
            books.pop(bid, None)
            lm_all.pop(bid, None)
        books.update(fresh)
        lm_all.update(lm_raw)
        prev_cats = {
            "authors": previous.authors,
            "series": previous.series,
            "tags": previous.tags,
            "publishers": previous.publishers,
            "languages": previous.languages,
        }
        for kind, attr in _LINK_ATTR.items():
            if state[kind] == "changed":
                cats_by_kind[kind] = _categories(rows[kind], kind in _SORTED)
                _fill(cats_by_kind[kind], books.values(), attr)
            else:
                old = prev_cats[kind]
                if state[kind] == "added":  # drop rows calibre removed (orphans)
                    ids = {r[0] for r in rows[kind]}
                    old = {cid: c for cid, c in old.items() if cid in ids}
                new_rows = [r for r in rows[kind] if r[0] not in old]
                cats_by_kind[kind] = _patch(
                    old,
                    _categories(new_rows, kind in _SORTED),
                    previous.books,
                    fresh,
                    removed,
                    attr,
                )
        id_total = (
            previous.id_total - sum(removed) + sum(b for b in fresh if b not in previous.books)
        )
    else:
        books, lm_all = fresh, lm_raw
        for kind, attr in _LINK_ATTR.items():
            cats_by_kind[kind] = _categories(rows[kind], kind in _SORTED)
            _fill(cats_by_kind[kind], books.values(), attr)
        id_total = sum(books)
    name_rows = {k: rows[k] for k in _NAME_TABLES}
    lib_id = rows["library_id"][0][0] if rows["library_id"] else ""
    max_lm = max(lm_raw.values(), default="")
    if incremental and previous is not None:
        max_lm = max(max_lm, previous.max_lm)
    return RawLibrary(
        library_id=lib_id,
        books=books,
        authors=cats_by_kind["authors"],
        series=cats_by_kind["series"],
        tags=cats_by_kind["tags"],
        publishers=cats_by_kind["publishers"],
        languages=cats_by_kind["languages"],
        custom_columns=custom,
        data_version=int(rows["data_version"][0][0]),
        lm_raw=lm_all,
        max_lm=max_lm,
        id_total=id_total,
        name_rows=name_rows,
        name_sigs=rows["sigs"][0],
        name_state=state,
        incremental=incremental,
        names_unchanged=incremental and "changed" not in state.values(),
        changed=len(fresh),
        changed_ids=frozenset(fresh),
        removed_ids=removed,
    )


_SORTED = {"authors", "series", "publishers"}  # tables with a sort column
_LINK_ATTR = {
    "authors": "author_ids",
    "series": "series_id",
    "tags": "tag_ids",
    "publishers": "publisher_id",
    "languages": "language_ids",
}


def _cat_ids(b: Book, attr: str) -> list[int]:
    v = getattr(b, attr)
    if isinstance(v, list):
        return v
    return [] if v is None else [v]


def _fill(cats: dict[int, Category], books: Iterable[Book], attr: str) -> None:
    """Category membership from every book's links."""
    for b in books:
        for cid in _cat_ids(b, attr):
            c = cats.get(cid)
            if c is None:
                raise _Stale()
            c.book_ids.append(b.id)


def _patch(
    prev: dict[int, Category],
    fresh_rows: dict[int, Category],
    prev_books: dict[int, Book],
    fresh: dict[int, Book],
    removed: frozenset[int],
    attr: str,
) -> dict[int, Category]:
    """Previous categories with only the changed books' memberships rewritten
    (copy on write: the previous snapshot's objects are never mutated)."""
    cats = dict(prev)
    for cid, added in fresh_rows.items():  # rows added since the previous snapshot
        if cid not in cats:
            cats[cid] = added
    drop: dict[int, set[int]] = {}
    add: dict[int, list[int]] = {}
    for bid in removed | fresh.keys():
        old = prev_books.get(bid)
        if old is not None:
            for cid in _cat_ids(old, attr):
                drop.setdefault(cid, set()).add(bid)
    for bid, b in fresh.items():
        for cid in _cat_ids(b, attr):
            add.setdefault(cid, []).append(bid)
    for cid in drop.keys() | add.keys():
        c = cats.get(cid)
        if c is None:
            if cid in add:
                raise _Stale()
            continue
        gone = drop.get(cid, set())
        ids = [x for x in c.book_ids if x not in gone] + add.get(cid, [])
        cats[cid] = Category(c.id, c.name, c.sort, ids)
    return cats


class _Stale(Exception):
    """An unchanged book points at a category that is gone: read everything."""


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


def load_with(conn: sqlite3.Connection, db: Path, previous: RawLibrary | None = None) -> RawLibrary:
    try:
        try:
            return _load(conn, previous)
        except sqlite3.OperationalError as e:
            # one byte that is not UTF-8 in one comment must not take the whole library
            # down: read it again with U+FFFD in place of what cannot be decoded. Only
            # then: a Python decoder per text value costs every healthy load time.
            if "decode" not in str(e).lower() or conn.text_factory is lenient_text:
                raise
            log.warning("metadata.db holds text that is not UTF-8 (%s): shown with U+FFFD", e)
            conn.text_factory = lenient_text
            return _load(conn, None)
    except sqlite3.Error as e:
        raise classify(e, db) from e


def lenient_text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _load(conn: sqlite3.Connection, previous: RawLibrary | None) -> RawLibrary:
    rows = fetch_all(conn, previous)
    try:
        return build(rows, previous)
    except _Stale:
        return build(fetch_all(conn, None), None)
