"""Build the benchmark library with calibre's own calibredb (cached under .cache/bench/).

    .venv/bin/python bench/app/build_library.py [--books 10000] [--dest DIR]

calibredb adds 500 generated EPUBs (with covers and OPF metadata) per call. It runs under
`eatmydata` when that is installed: calibre fsyncs after every book, which is the slow
part on this disk, and the result is the same library calibre would write without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import time
from pathlib import Path

from lectern_app.demo import add_books, random_specs

ROOT = Path(__file__).resolve().parents[2]


def build(books: int, dest: Path) -> Path:
    marker = dest / ".bench-complete"
    if marker.exists():
        return dest
    done = 0
    if (dest / "metadata.db").exists():  # resume an interrupted build
        conn = sqlite3.connect(f"file:{dest / 'metadata.db'}?mode=ro", uri=True)
        done = conn.execute("SELECT count(*) FROM books").fetchone()[0]
        conn.close()
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("eatmydata") and "LD_PRELOAD" not in os.environ:
        os.environ["LD_PRELOAD"] = "libeatmydata.so"
    t0 = time.monotonic()
    specs = random_specs(books, seed=10_000, cover_every=1)
    work = dest.parent / (dest.name + ".work")
    for start in range(done, books, 2000):
        add_books(dest, specs[start : min(books, start + 2000)], work, batch=500)
        print(
            f"  {min(books, start + 2000)}/{books} books, {time.monotonic() - t0:.0f} s", flush=True
        )
    os.environ.pop("LD_PRELOAD", None)
    shutil.rmtree(work, ignore_errors=True)
    marker.write_text(f"{books} books\n")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--books", type=int, default=10_000)
    ap.add_argument("--dest", type=Path, default=None)
    a = ap.parse_args()
    dest = a.dest or ROOT / ".cache" / "bench" / f"library-{a.books}"
    print(build(a.books, dest))


if __name__ == "__main__":
    main()
