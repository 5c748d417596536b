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
        self.last_change = max((b.last_modified_epoch for b in self.books.values()), default=0.0)
        self._orders: dict[str, list[int]] = {}
        self._build_orders(previous if raw.names_unchanged else None)
        self._by_name: dict[str, dict[str, int]] = {
            kind: {fold(c.name): c.id for c in cats.values()}
            for kind, cats in self.categories.items()
        }
        self._cat_orders: dict[tuple[str, str], list[Category]] = {}
        self._fields_by_id: dict[int, tuple[str, ...]] = {}
        self.formats: dict[str, set[int]] = {}
        for b in self.books.values():
            for f in b.formats:
                self.formats.setdefault(f.fmt, set()).add(b.id)
        self._build_search(previous if raw.names_unchanged else None)
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

    def _build_orders(self, previous: Library | None) -> None:
        """Sorted id lists per sort key; patched from the previous snapshot when few books
        changed and no category was renamed (keys of unchanged books are then unchanged)."""
        books = self.books
        keys = self._sort_keys()
        changed: list[int] | None = None
        if previous is not None:
            old = previous.books
            changed = [i for i, b in books.items() if old.get(i) is not b]
            if len(changed) > 500:
                changed = None
        for name, keyfn in keys.items():
            if changed is None or previous is None or name not in previous._orders:
                self._orders[name] = [b.id for b in sorted(books.values(), key=keyfn)]
                continue
            gone = set(changed)
            kept = [i for i in previous._orders[name] if i not in gone and i in books]
            self._orders[name] = _patched(kept, changed, keyfn, books)

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
    def _build_search(self, previous: Library | None) -> None:
        parts: list[str] = []
        offsets: list[int] = []
        ids: list[int] = []
        fields: list[tuple[str, ...]] = []
        by_id: dict[int, tuple[str, ...]] = {}
        old_books = previous.books if previous is not None else {}
        old_fields = previous._fields_by_id if previous is not None else {}
        pos = 0
        for b in self.books.values():
            f = old_fields.get(b.id) if old_books.get(b.id) is b else None
            if f is None:
                f = self._search_fields(b)
            by_id[b.id] = f
            text = _FSEP.join(f) + _SEP
            offsets.append(pos)
            ids.append(b.id)
            fields.append(f)
            parts.append(text)
            pos += len(text)
        self._hay = "".join(parts)
        self._hay_offsets = offsets
        self._hay_ids = ids
        self._hay_fields = fields
        self._fields_by_id = by_id

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
            flds = self._hay_fields[idx]
            score = _score(flds, tokens)
            if score > 0:
                hits.append(SearchHit(self._hay_ids[idx], score))
        books = self.books
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
