"""Generate small EPUB files and Calibre libraries made by Calibre's own `calibredb`.

Used by `python -m lectern_app` when no library is configured (the demo library), by the
tests and by the benchmark. Books are tiny but valid EPUB 2 files whose OPF carries the
metadata (title, authors in order, tags, series, rating, ...), so one `calibredb add` call
imports many books with all their metadata at once.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr


@dataclass
class BookSpec:
    """The metadata written into a generated EPUB's OPF."""

    title: str
    authors: Sequence[str] = ("Unknown",)
    tags: Sequence[str] = ()
    series: str | None = None
    series_index: float | None = None
    publisher: str | None = None
    languages: Sequence[str] = ("en",)
    rating: int | None = None  # 0-10, calibre's scale
    comments: str | None = None  # HTML
    isbn: str | None = None
    pubdate: str | None = None  # YYYY-MM-DD
    cover: bool = True
    cover_color: tuple[int, int, int] = (70, 90, 140)
    body_paragraphs: int = 3
    extra_identifiers: dict[str, str] = field(default_factory=dict)


def calibredb_path() -> str | None:
    return shutil.which("calibredb")


def make_cover_jpeg(
    text: str, color: tuple[int, int, int], size: tuple[int, int] = (300, 450)
) -> bytes:
    """A plain JPEG cover with a title band (Pillow)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.rectangle((10, h // 3, w - 10, h // 3 + 60), fill=(240, 240, 230))
    # Pillow's default bitmap font is ASCII only; keep the band readable for any title.
    label = text.encode("ascii", "replace").decode("ascii")[:32]
    draw.text((20, h // 3 + 20), label, fill=(20, 20, 20))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def _opf(spec: BookSpec, book_uuid: str, has_cover: bool) -> str:
    meta: list[str] = [f"<dc:title>{escape(spec.title)}</dc:title>"]
    for a in spec.authors:
        meta.append(f'<dc:creator opf:role="aut">{escape(a)}</dc:creator>')
    for lang in spec.languages:
        meta.append(f"<dc:language>{escape(lang)}</dc:language>")
    meta.append(f'<dc:identifier id="uid" opf:scheme="uuid">{book_uuid}</dc:identifier>')
    if spec.isbn:
        meta.append(f'<dc:identifier opf:scheme="ISBN">{escape(spec.isbn)}</dc:identifier>')
    for scheme, val in spec.extra_identifiers.items():
        meta.append(f"<dc:identifier opf:scheme={quoteattr(scheme)}>{escape(val)}</dc:identifier>")
    if spec.publisher:
        meta.append(f"<dc:publisher>{escape(spec.publisher)}</dc:publisher>")
    for t in spec.tags:
        meta.append(f"<dc:subject>{escape(t)}</dc:subject>")
    if spec.comments:
        meta.append(f"<dc:description>{escape(spec.comments)}</dc:description>")
    if spec.pubdate:
        meta.append(f"<dc:date>{escape(spec.pubdate)}</dc:date>")
    if spec.series:
        meta.append(f'<meta name="calibre:series" content={quoteattr(spec.series)}/>')
        if spec.series_index is not None:
            meta.append(f'<meta name="calibre:series_index" content="{spec.series_index}"/>')
    if spec.rating is not None:
        meta.append(f'<meta name="calibre:rating" content="{spec.rating}"/>')
    if has_cover:
        meta.append('<meta name="cover" content="cover-image"/>')
    cover_item = (
        '<item id="cover-image" href="cover.jpg" media-type="image/jpeg"/>' if has_cover else ""
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="2.0" unique-identifier="uid">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:opf="http://www.idpf.org/2007/opf">' + "".join(meta) + "</metadata>"
        "<manifest>"
        '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'
        '<item id="text" href="text.xhtml" media-type="application/xhtml+xml"/>'
        + cover_item
        + "</manifest>"
        '<spine toc="ncx"><itemref idref="text"/></spine>'
        "</package>"
    )


_CONTAINER = (
    '<?xml version="1.0"?>\n'
    '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
    '<rootfiles><rootfile full-path="OEBPS/content.opf" '
    'media-type="application/oebps-package+xml"/></rootfiles></container>'
)


def make_epub(spec: BookSpec, dest: Path) -> Path:
    """Write a small valid EPUB 2 carrying `spec` in its OPF; returns `dest`."""
    book_uuid = f"urn:uuid:{uuid.uuid4()}"
    title = escape(spec.title)
    paras = "".join(
        f"<p>{title}: paragraph {i + 1}. Lorem ipsum dolor sit amet.</p>"
        for i in range(spec.body_paragraphs)
    )
    text = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>'
        f"{title}</title></head><body><h1>{title}</h1>{paras}</body></html>"
    )
    ncx = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
        f'<head><meta name="dtb:uid" content="{book_uuid}"/></head>'
        f"<docTitle><text>{title}</text></docTitle><navMap>"
        '<navPoint id="p1" playOrder="1"><navLabel><text>Start</text></navLabel>'
        '<content src="text.xhtml"/></navPoint></navMap></ncx>'
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", _CONTAINER, zipfile.ZIP_DEFLATED)
        z.writestr("OEBPS/content.opf", _opf(spec, book_uuid, spec.cover), zipfile.ZIP_DEFLATED)
        z.writestr("OEBPS/toc.ncx", ncx, zipfile.ZIP_DEFLATED)
        z.writestr("OEBPS/text.xhtml", text, zipfile.ZIP_DEFLATED)
        if spec.cover:
            z.writestr("OEBPS/cover.jpg", make_cover_jpeg(spec.title, spec.cover_color))
    return dest


def run_calibredb(library: Path, *args: str, timeout: float = 600) -> str:
    """Run `calibredb <args> --with-library <library>`; raise with its stderr on failure."""
    exe = calibredb_path()
    if exe is None:
        raise RuntimeError("calibredb is not installed (Debian package `calibre`)")
    return run_calibre_program(
        [exe, *args, "--with-library", str(library)], f"calibredb {' '.join(args[:2])}", timeout
    )


def run_calibre_program(argv: list[str], what: str, timeout: float = 600) -> str:
    """Run a calibre program, waiting its turn: calibre allows one calibre program per
    user at a time (any library). Raise with its stderr on failure."""
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        busy = proc.returncode != 0 and "Another calibre program" in proc.stderr
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


_FIRST = ["Ada", "Émile", "Zoë", "Søren", "Ngozi", "Hiroshi", "Олег", "Marta", "Juan", "Li"]
_LAST = ["Lovelace", "Zola", "Ångström", "Kierkegaard", "Adichie", "Tanaka", "Петров", "Núñez"]
_WORDS = [
    "river",
    "winter",
    "garden",
    "clock",
    "glass",
    "harbor",
    "lantern",
    "mirror",
    "orchard",
    "paper",
    "quiet",
    "storm",
    "stone",
    "summer",
    "thread",
    "valley",
    "whale",
    "ember",
    "café",
    "naïve",
    "façade",
    "jalapeño",
    "über",
    "fjord",
]
_TAGS = ["Fiction", "History", "Science", "Poetry", "Fantasy", "Mystery", "Essays", "Travel"]
_PUBLISHERS = ["Penguin", "Gallimard", "Suhrkamp", "Tor", "Éditions du Seuil", None]


def random_specs(n: int, seed: int = 42, cover_every: int = 1) -> list[BookSpec]:
    """`n` varied book specs (deterministic for a seed)."""
    rnd = random.Random(seed)
    series = [f"The {w.title()} Cycle" for w in _WORDS[:12]]
    specs: list[BookSpec] = []
    for i in range(n):
        words = rnd.sample(_WORDS, rnd.randint(1, 3))
        title = " ".join(w.title() for w in words) + f" {i + 1}"
        authors = [
            f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}{rnd.randint(1, max(2, n // 8))}"
            for _ in range(rnd.choice((1, 1, 1, 2, 3)))
        ]
        has_series = rnd.random() < 0.4
        specs.append(
            BookSpec(
                title=title,
                authors=list(dict.fromkeys(authors)),
                tags=rnd.sample(_TAGS, rnd.randint(0, 3)),
                series=rnd.choice(series) if has_series else None,
                series_index=float(rnd.randint(1, 9)) if has_series else None,
                publisher=rnd.choice(_PUBLISHERS),
                languages=[rnd.choice(["en", "fr", "de", "es"])],
                rating=rnd.choice([None, 2, 4, 6, 8, 10]),
                comments=f"<p>A book about {' and '.join(words)}. Number {i + 1}.</p>",
                isbn=f"978{rnd.randint(10**9, 10**10 - 1)}",
                pubdate=f"{rnd.randint(1900, 2023)}-{rnd.randint(1, 12):02d}-15",
                cover=(i % cover_every == 0),
                cover_color=(rnd.randint(30, 200), rnd.randint(30, 200), rnd.randint(30, 200)),
            )
        )
    return specs


def add_books(library: Path, specs: Sequence[BookSpec], workdir: Path, batch: int = 500) -> None:
    """Import specs into `library` with `calibredb add`, many files per call."""
    workdir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(specs), batch):
        files: list[str] = []
        for j, spec in enumerate(specs[start : start + batch]):
            files.append(str(make_epub(spec, workdir / f"book-{start + j:06d}.epub")))
        run_calibredb(library, "add", "--duplicates", *files)
        for f in files:
            os.unlink(f)


def build_demo_library(dest: Path, n: int = 36) -> Path:
    """Build a demo library at `dest` with calibredb (idempotent: reuses a finished one)."""
    marker = dest / ".lectern-demo-complete"
    if marker.exists() and (dest / "metadata.db").exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    add_books(dest, random_specs(n, seed=7, cover_every=1), dest.parent / ".demo-work")
    shutil.rmtree(dest.parent / ".demo-work", ignore_errors=True)
    marker.write_text("built by lectern_app.demo\n")
    return dest
