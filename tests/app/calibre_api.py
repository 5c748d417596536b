"""Edits calibredb cannot make, made through calibre's own database API (`calibre-debug`).

calibre desktop renames and merges authors, tags, series and publishers with
`Cache.rename_items` (the Tag browser's "Rename"); calibredb has no such command.
`calibre-debug` is a calibre program too: like calibredb it takes calibre's per-user
single-instance lock and waits its turn while another calibre program holds it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lectern_app.demo import run_calibre_program

# calibredb refuses to start while another calibre program holds this lock; do the same
_PRELUDE = """\
import sys
from calibre.utils.lock import singleinstance
if not singleinstance('db'):
    sys.exit('Another calibre program is running')
from calibre.library import db
"""


def run_calibre_debug(code: str, timeout: float = 600) -> str:
    """Run `code` in calibre's Python after taking calibre's single-instance lock."""
    exe = shutil.which("calibre-debug")
    if exe is None:
        raise RuntimeError("calibre-debug is not installed (Debian package `calibre`)")
    return run_calibre_program([exe, "-c", _PRELUDE + code], "calibre-debug", timeout)


def rename_items(library: Path, field: str, renames: dict[int, str]) -> None:
    """What calibre desktop does on a rename in the Tag browser; renaming to an existing
    name merges the two items."""
    run_calibre_debug(
        f"ldb = db({str(library)!r})\n"
        f"ldb.new_api.rename_items({field!r}, {renames!r})\n"
        "ldb.close()\n"
    )
