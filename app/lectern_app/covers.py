"""Covers: the original cover.jpg and thumbnails generated once under DATA_DIR."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from .library import Library
from .model import Book

log = logging.getLogger("lectern.covers")


def safe_join(root: str, *parts: str) -> Path | None:
    """root/parts resolved, or None if it escapes root (path traversal)."""
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, *parts))
    if full != base and not full.startswith(base + os.sep):
        return None
    return Path(full)


def cover_path(lib: Library, b: Book) -> Path | None:
    if not b.has_cover:
        return None
    p = safe_join(lib.root, b.path, "cover.jpg")
    return p if p is not None and p.is_file() else None


class Thumbnails:
    def __init__(self, data_dir: Path, width: int) -> None:
        self.dir = data_dir / "thumbnails"
        self.width = width
        self.generated = 0

    def path_for(self, lib: Library, b: Book) -> Path:
        lid = "".join(c for c in lib.library_id if c.isalnum() or c == "-") or "library"
        stamp = b.cover_version
        return self.dir / lid / f"{b.id // 1000:03d}" / f"{b.id}-{stamp}-w{self.width}.jpg"

    def get(self, lib: Library, b: Book) -> Path | None:
        """The thumbnail file, generated on first use; None without a cover."""
        dest = self.path_for(lib, b)
        if dest.is_file():
            return dest
        src = cover_path(lib, b)
        if src is None:
            return None
        try:
            from PIL import Image

            with Image.open(src) as original:
                im = original.convert("RGB")
                h = max(1, round(im.height * self.width / max(1, im.width)))
                im.thumbnail((self.width, h))
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
                with os.fdopen(fd, "wb") as fh:
                    im.save(fh, "JPEG", quality=82, optimize=True)
                os.replace(tmp, dest)  # atomic: concurrent generators never see half a file
            self.generated += 1
        except OSError as e:
            log.warning("thumbnail for book %d failed: %s", b.id, e)
            return src  # serve the original rather than fail
        return dest
