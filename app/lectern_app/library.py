"""A loaded library: the raw snapshot plus precomputed indexes for fast answers."""

from __future__ import annotations

import time
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Book, Category
from .reader import RawLibrary
from .textfold import fold, strip_html

SORT_KEYS = ("added", "title", "author", "series", "rating", "pubdate", "id", "modified")
FILTER_KINDS = {
    "author": "authors",
    "series": "series",
    "tag": "tags",
    "publisher": "publishers",
    "language": "languages",
}
# field weights for ranking search hits
_WEIGHTS = (
    ("title", 10.0),
    ("authors", 8.0),
    ("series", 6.0),
    ("tags", 5.0),
    ("publisher", 3.0),
    ("comments", 1.0),
)
_SEP = "\x1e"  # between books in the haystack
_FSEP = "\x1f"  # between fields of one book


@dataclass(slots=True)
class SearchHit:
    book_id: int
    score: float


class Library:
    """Immutable once built; replaced wholesale on every change (readers never lock)."""

    last_change: float
    _by_name: dict[str, dict[str, int]]
    formats: dict[str, set[int]]

    def __init__(
        self, raw: RawLibrary, version: int, root: str, previous: Library | None = None
    ) -> None:
        t0 = time.perf_counter()
        self.raw = raw
        self.root = root
        self.version = version
        self.library_id = raw.library_id
        self.books = raw.books
        self.categories: dict[str, dict[int, Category]] = {
            "authors": raw.authors,
            "series": raw.series,
            "tags": raw.tags,
            "publishers": raw.publishers,
            "languages": raw.languages,
        }
        self.custom_columns = raw.custom_columns
        self.loaded_at = time.time()
        self._orders: dict[str, list[int]] = {}
        self._cat_orders: dict[tuple[str, str], list[Category]] = {}
        self._fields_by_id: dict[int, tuple[str, ...]] = {}
        patch = previous is not None and raw.incremental and raw.names_unchanged
        if patch and previous is not None:
            # a few books changed and no category was renamed: patch the previous indexes
            fresh = [self.books[i] for i in raw.changed_ids if i in self.books]
            self.last_change = max([previous.last_change, *(b.last_modified_epoch for b in fresh)])
            self._by_name = {}
            for kind, cats in self.categories.items():
                names = previous._by_name[kind]
                if raw.name_state.get(kind) != "same":  # rows added/removed, none renamed
                    names = {n: i for n, i in names.items() if i in cats}
                    names.update(
                        (fold(c.name), c.id)
                        for c in cats.values()
                        if c.id not in previous.categories[kind]
                    )
                self._by_name[kind] = names
            self.formats = _patched_formats(previous, raw.changed_ids | raw.removed_ids, fresh)
            self._patch_orders(previous)
            self._patch_search(previous, fresh)
        else:
            self.last_change = max(
                (b.last_modified_epoch for b in self.books.values()), default=0.0
            )
            self._by_name = {
                kind: {fold(c.name): c.id for c in cats.values()}
                for kind, cats in self.categories.items()
            }
            self.formats = {}
            for b in self.books.values():
                for f in b.formats:
                    self.formats.setdefault(f.fmt, set()).add(b.id)
            self._build_orders()
            self._build_search()
        self.build_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ names
    def author_names(self, b: Book) -> list[str]:
        a = self.categories["authors"]
        return [a[i].name for i in b.author_ids if i in a]

    def tag_names(self, b: Book) -> list[str]:
        t = self.categories["tags"]
        return [t[i].name for i in b.tag_ids if i in t]

    def language_codes(self, b: Book) -> list[str]:
        la = self.categories["languages"]
        return [la[i].name for i in b.language_ids if i in la]

    def series_name(self, b: Book) -> str | None:
        s = self.categories["series"].get(b.series_id) if b.series_id is not None else None
        return s.name if s else None

    def publisher_name(self, b: Book) -> str | None:
        p = self.categories["publishers"]
        c = p.get(b.publisher_id) if b.publisher_id is not None else None
        return c.name if c else None

    # ----------------------------------------------------------------- orders
    def _sort_keys(self) -> dict[str, Callable[[Book], Any]]:
        series = self.categories["series"]

        def series_key(b: Book) -> tuple[int, str, float, int]:
            s = series.get(b.series_id) if b.series_id is not None else None
            if s is None:
                return (1, "", 0.0, b.id)
            return (0, fold(s.sort), b.series_index, b.id)

        return {
            "id": lambda b: b.id,
            "added": lambda b: (b.timestamp_epoch, b.id),
            "modified": lambda b: (b.last_modified_epoch, b.id),
            "pubdate": lambda b: (b.pubdate_epoch, b.id),
            "title": lambda b: (fold(b.sort), b.id),
            "author": lambda b: (fold(b.author_sort), fold(b.sort), b.id),
            "rating": lambda b: (b.rating if b.rating is not None else -1, b.id),
            "series": series_key,
        }

    def _build_orders(self) -> None:
        for name, keyfn in self._sort_keys().items():
            self._orders[name] = [b.id for b in sorted(self.books.values(), key=keyfn)]

    def _patch_orders(self, previous: Library) -> None:
        """Previous orders minus changed/removed books, changed books inserted by key
        (keys of unchanged books cannot have moved: no category was renamed)."""
        books = self.books
        touched = self.raw.changed_ids | self.raw.removed_ids
        present = [i for i in self.raw.changed_ids if i in books]
        for name, keyfn in self._sort_keys().items():
            kept = list(previous._orders[name])
            for i in touched:
                if i in previous.books:
                    kept.remove(i)
            self._orders[name] = _patched(kept, present, keyfn, books)

    def order(self, key: str, descending: bool) -> list[int]:
        ids = self._orders[key]
        if not descending:
            return ids
        cache_key = key + ":desc"
        rev = self._orders.get(cache_key)
        if rev is None:
            rev = ids[::-1]
            self._orders[cache_key] = rev
        return rev

    # ----------------------------------------------------------- categories
    def category_id(self, kind: str, name: str) -> int | None:
        return self._by_name[kind].get(fold(name))

    def category_list(self, kind: str, sort: str, descending: bool) -> list[Category]:
        key = (kind, sort + (":desc" if descending else ""))
        cached = self._cat_orders.get(key)
        if cached is not None:
            return cached
        cats = [c for c in self.categories[kind].values() if c.book_ids]
        if sort == "count":
            cats.sort(key=lambda c: (-c.count if descending else c.count, fold(c.sort), c.id))
        else:
            cats.sort(key=lambda c: (fold(c.sort), c.id), reverse=descending)
        self._cat_orders[key] = cats
        return cats

    # ---------------------------------------------------------------- search
    def _build_search(self) -> None:
        parts: list[str] = []
        offsets: list[int] = []
        pos = 0
        for b in self.books.values():
            f = self._search_fields(b)
            self._fields_by_id[b.id] = f
            text = _FSEP.join(f) + _SEP
            offsets.append(pos)
            parts.append(text)
            pos += len(text)
        self._hay = "".join(parts)
        self._hay_offsets = offsets
        self._hay_books = list(self.books.values())
        self._hay_fields = [self._fields_by_id[b.id] for b in self._hay_books]
        self._hay_dead = 0

    def _patch_search(self, previous: Library, fresh: list[Book]) -> None:
        """Append changed books to the previous haystack; entries whose book object is no
        longer current are skipped at query time, and compacted away when they pile up."""
        dead = previous._hay_dead + len(self.raw.changed_ids | self.raw.removed_ids)
        if dead > max(1000, len(self.books) // 5):
            self._build_search()
            return
        parts: list[str] = []
        offsets = list(previous._hay_offsets)
        hay_books = list(previous._hay_books)
        hay_fields = list(previous._hay_fields)
        pos = len(previous._hay)
        by_id = dict(previous._fields_by_id)
        for b in fresh:
            f = self._search_fields(b)
            by_id[b.id] = f
            text = _FSEP.join(f) + _SEP
            offsets.append(pos)
            hay_books.append(b)
            hay_fields.append(f)
            parts.append(text)
            pos += len(text)
        for i in self.raw.removed_ids:
            by_id.pop(i, None)
        self._hay = previous._hay + "".join(parts)
        self._hay_offsets = offsets
        self._hay_books = hay_books
        self._hay_fields = hay_fields
        self._fields_by_id = by_id
        self._hay_dead = dead

    def _search_fields(self, b: Book) -> tuple[str, ...]:
        return (
            fold(b.title),
            fold(" & ".join(self.author_names(b))),
            fold(self.series_name(b) or ""),
            fold(_FSEP.join(self.tag_names(b))),
            fold(self.publisher_name(b) or ""),
            fold(strip_html(b.comments)) if b.comments else "",
        )

    def search(self, query: str) -> list[SearchHit]:
        """All books matching every token of `query`, best first."""
        tokens = [t for t in fold(query).split() if t]
        if not tokens:
            return []
        tokens = list(dict.fromkeys(tokens))
        probe = max(tokens, key=len)
        hay, offsets = self._hay, self._hay_offsets
        books = self.books
        hits: list[SearchHit] = []
        start = 0
        n = len(offsets)
        while True:
            p = hay.find(probe, start)
            if p < 0:
                break
            idx = bisect_right(offsets, p) - 1
            nxt = offsets[idx + 1] if idx + 1 < n else len(hay)
            start = nxt
            b = self._hay_books[idx]
            if books.get(b.id) is not b:
                continue  # an older version of an edited or removed book
            score = _score(self._hay_fields[idx], tokens)
            if score > 0:
                hits.append(SearchHit(b.id, score))
        hits.sort(key=lambda h: (-h.score, -books[h.book_id].timestamp_epoch, h.book_id))
        return hits

    # ---------------------------------------------------------------- filter
    def filter_ids(self, kind: str, cat_ids: Iterable[int]) -> set[int]:
        cats = self.categories[kind]
        out: set[int] | None = None
        for cid in cat_ids:
            c = cats.get(cid)
            s = set(c.book_ids) if c else set()
            out = s if out is None else out & s
        return out if out is not None else set()


def _patched_formats(
    previous: Library, touched: frozenset[int], fresh: list[Book]
) -> dict[str, set[int]]:
    formats = dict(previous.formats)
    copied: set[str] = set()

    def own(fmt: str) -> set[int]:
        if fmt not in copied:
            formats[fmt] = set(formats.get(fmt, ()))
            copied.add(fmt)
        return formats[fmt]

    for i in touched:
        old = previous.books.get(i)
        if old is not None:
            for f in old.formats:
                own(f.fmt).discard(i)
    for b in fresh:
        for f in b.formats:
            own(f.fmt).add(b.id)
    return formats


def _patched(
    kept: list[int], changed: list[int], keyfn: Callable[[Book], Any], books: dict[int, Book]
) -> list[int]:
    def by_id(j: int) -> Any:
        return keyfn(books[j])

    for i in changed:
        insort(kept, i, key=by_id)
    return kept


def _score(fields: Sequence[str], tokens: Sequence[str]) -> float:
    total = 0.0
    for tok in tokens:
        best = 0.0
        for (_name, weight), text in zip(_WEIGHTS, fields, strict=True):
            if weight <= best or not text:
                continue
            p = text.find(tok)
            if p < 0:
                continue
            w = weight
            if p == 0 or not text[p - 1].isalnum():
                w *= 1.5  # word start
            best = max(best, w)
        if best == 0.0:
            return 0.0
        total += best
    if fields[0] == " ".join(tokens):
        total += 20.0  # exact title
    return total
