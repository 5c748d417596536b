"""Generate a Calibre library with Calibre's own ``calibredb``.

EPUBs are generated with varied, awkward metadata embedded in their OPF (several
authors in a set order, unicode and right-to-left titles, fractional series indexes,
tags, publishers, languages, ratings; some without covers), then added in ONE
``calibredb add`` call — calibre reads the OPF itself, so the library is exactly what
a user's Calibre desktop would have written.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw

FIRST = [
    "Ana",
    "Björn",
    "Chloé",
    "Dmitri",
    "Émile",
    "Farah",
    "Gabriel",
    "Hana",
    "Ígor",
    "Jun",
    "Katarzyna",
    "Léa",
    "Mateo",
    "Nadia",
    "Øystein",
    "Priya",
    "Quentin",
    "Rosa",
    "Søren",
    "Tomás",
    "Ursula",
    "Václav",
    "Wen",
    "Yara",
    "Zoë",
]
LAST = [
    "Álvarez",
    "Brontë",
    "Čapek",
    "Dürrenmatt",
    "Eriksson",
    "Fønhus",
    "García Márquez",
    "Hölderlin",
    "Ibsen",
    "Jókai",
    "Kafka",
    "Lagerlöf",
    "Mistral",
    "Nabokov",
    "Oz",
    "Pessoa",
    "Queneau",
    "Rulfo",
    "Saramago",
    "Tolstoï",
    "Undset",
    "Verne",
    "Woolf",
    "Yourcenar",
    "Zweig",
]
WORDS = [
    "Night",
    "River",
    "Glass",
    "Winter",
    "Garden",
    "Letters",
    "Shadow",
    "Harbour",
    "Silence",
    "Clockwork",
    "Orchard",
    "Lantern",
    "Atlas",
    "Mirror",
    "Salt",
    "Ember",
    "Tide",
    "Archive",
]
RTL_TITLES = ["كتاب الليل", "ספר הנהר", "باغ زمستان"]
TAGS = [
    "Fiction",
    "Science Fiction",
    "Poetry",
    "History",
    "Essays",
    "Mystery",
    "Fantasy",
    "Philosophy",
    "Biography",
    "Children",
    "Travel",
    "Classics",
]
PUBLISHERS = ["Penguin", "Gallimard", "Suhrkamp", "Ediciones Cátedra", "Norstedts", "Tor"]
LANGS = ["eng", "fra", "deu", "spa", "swe", "ara", "heb"]
SERIES = ["The Long Road", "Chroniques du Nord", "Die Stadt", "Saga del Mar"]


@dataclass
class BookSpec:
    title: str
    authors: list[str]
    tags: list[str] = field(default_factory=list)
    publisher: str | None = None
    language: str = "eng"
    series: str | None = None
    series_index: float | None = None
    rating: int | None = None  # calibre's 0-10 scale
    has_cover: bool = True
    description: str = ""


def make_specs(count: int, seed: int = 42) -> list[BookSpec]:
    """Deterministic, varied book metadata."""
    rnd = random.Random(seed)
    specs: list[BookSpec] = []
    for i in range(count):
        if i % 17 == 3:
            title = f"{RTL_TITLES[i % len(RTL_TITLES)]} {i}"
        else:
            title = f"{rnd.choice(WORDS)} of {rnd.choice(WORDS)} {i}"
        n_authors = 1 if i % 5 else rnd.randint(2, 4)
        authors = [f"{rnd.choice(FIRST)} {rnd.choice(LAST)}" for _ in range(n_authors)]
        authors = list(dict.fromkeys(authors))
        spec = BookSpec(
            title=title,
            authors=authors,
            tags=rnd.sample(TAGS, rnd.randint(0, 3)),
            publisher=rnd.choice(PUBLISHERS) if i % 4 else None,
            language=rnd.choice(LANGS),
            rating=rnd.choice([None, 2, 4, 6, 8, 10]),
            has_cover=i % 7 != 5,
            description=f"<p>Book <b>{i}</b> — a story about {rnd.choice(WORDS).lower()}.</p>",
        )
        if i % 3 == 0:
            spec.series = SERIES[i % len(SERIES)]
            spec.series_index = [1.0, 2.0, 2.5, 3.0][i % 4]
        specs.append(spec)
    return specs


def cover_jpeg(text: str, seed: int) -> bytes:
    rnd = random.Random(seed)
    img = Image.new("RGB", (600, 900), tuple(rnd.randint(40, 215) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    draw.rectangle((40, 40, 560, 860), outline=(255, 255, 255), width=6)
    draw.text((70, 400), text[:40], fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def write_epub(path: Path, spec: BookSpec, seed: int) -> None:
    """A minimal valid EPUB 2 whose OPF carries all metadata calibre reads."""
    creators = "".join(f'<dc:creator opf:role="aut">{escape(a)}</dc:creator>' for a in spec.authors)
    subjects = "".join(f"<dc:subject>{escape(t)}</dc:subject>" for t in spec.tags)
    meta = []
    if spec.publisher:
        meta.append(f"<dc:publisher>{escape(spec.publisher)}</dc:publisher>")
    if spec.series:
        meta.append(f'<meta name="calibre:series" content="{escape(spec.series)}"/>')
        meta.append(f'<meta name="calibre:series_index" content="{spec.series_index}"/>')
    if spec.rating is not None:
        meta.append(f'<meta name="calibre:rating" content="{spec.rating}"/>')
    if spec.has_cover:
        meta.append('<meta name="cover" content="cover-img"/>')
    cover_item = (
        '<item id="cover-img" href="cover.jpg" media-type="image/jpeg"/>' if spec.has_cover else ""
    )
    opf = f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="2.0" unique-identifier="uid">
 <metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf">
  <dc:title>{escape(spec.title)}</dc:title>{creators}{subjects}
  <dc:language>{spec.language}</dc:language>
  <dc:identifier id="uid">urn:uuid:lectern-{seed}</dc:identifier>
  <dc:identifier opf:scheme="ISBN">978{seed:010d}</dc:identifier>
  <dc:description>{escape(spec.description)}</dc:description>
  {"".join(meta)}
 </metadata>
 <manifest>
  <item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>
  <item id="c1" href="c1.xhtml" media-type="application/xhtml+xml"/>{cover_item}
 </manifest>
 <spine toc="ncx"><itemref idref="c1"/></spine>
</package>"""
    ncx = """<?xml version="1.0" encoding="utf-8"?>
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><head/><docTitle><text>t</text>
</docTitle><navMap><navPoint id="p1" playOrder="1"><navLabel><text>1</text></navLabel>
<content src="c1.xhtml"/></navPoint></navMap></ncx>"""
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{escape(spec.title)}</title></head>
<body><h1>{escape(spec.title)}</h1><p>{"Lorem ipsum dolor sit amet. " * 40}</p></body></html>"""
    container = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="content.opf" media-type="application/oebps-package+xml"/>
</rootfiles></container>"""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        zf.writestr("META-INF/container.xml", container, zipfile.ZIP_DEFLATED)
        zf.writestr("content.opf", opf, zipfile.ZIP_DEFLATED)
        zf.writestr("toc.ncx", ncx, zipfile.ZIP_DEFLATED)
        zf.writestr("c1.xhtml", body, zipfile.ZIP_DEFLATED)
        if spec.has_cover:
            zf.writestr("cover.jpg", cover_jpeg(spec.title, seed))


def calibredb() -> str:
    exe = shutil.which("calibredb")
    if not exe:
        raise RuntimeError("calibredb not found: install Debian's calibre (make host-packages)")
    return exe


def run_calibredb(
    args: list[str], env: dict[str, str] | None = None, wait: float = 120
) -> subprocess.CompletedProcess[str]:
    """calibredb ARGS, waiting (within reason) while another calibre program holds
    calibre's single-instance lock (parallel test runs)."""
    deadline = time.monotonic() + wait
    while True:
        proc = subprocess.run(
            [calibredb(), *args], capture_output=True, text=True, check=False, env=env
        )
        busy = "Another calibre program" in proc.stderr
        if proc.returncode == 0 or not busy or time.monotonic() > deadline:
            return proc
        time.sleep(random.uniform(0.5, 2.0))


def build_library(library: Path, count: int, seed: int = 42) -> list[BookSpec]:
    """Create (or extend) a Calibre library at ``library`` with ``count`` generated books."""
    library.mkdir(parents=True, exist_ok=True)
    specs = make_specs(count, seed)
    with tempfile.TemporaryDirectory(prefix="lectern-epubs-") as tmp:
        files = []
        for i, spec in enumerate(specs):
            path = Path(tmp) / f"book{i:06d}.epub"
            write_epub(path, spec, seed * 1_000_000 + i)
            files.append(str(path))
        # calibre tries to render a cover for cover-less books and logs a traceback when
        # it cannot (no display); that is expected, so stderr is only shown on failure.
        proc = run_calibredb(
            ["add", "--with-library", str(library), "--duplicates", *files],
            env={
                "HOME": tmp,
                "PATH": "/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "QT_QPA_PLATFORM": "offscreen",
                "CALIBRE_CONFIG_DIRECTORY": f"{tmp}/cfg",
            },
        )
        if proc.returncode != 0:
            raise RuntimeError(f"calibredb add failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return specs
