"""Case- and diacritics-insensitive folding for search and sorting."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_SPECIAL = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "ı": "i"})  # noqa: RUF001


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """NFKD, drop combining marks, casefold: 'Émile Zoë' -> 'emile zoe'."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_SPECIAL))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold_uncached(text: str) -> str:
    return fold.__wrapped__(text)


def strip_html(html: str) -> str:
    return _SPACE.sub(" ", _TAGS.sub(" ", html)).strip()
