"""Edits calibredb cannot make, made through calibre's own database API (`calibre-debug`).

calibre desktop renames and merges authors, tags, series and publishers with
`Cache.rename_items` (the Tag browser's "Rename"); calibredb has no such command.
`calibre-debug` is a calibre program too: like calibredb it takes calibre's per-user
single-instance lock and waits its turn while another calibre program holds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

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
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(
            [exe, "-c", _PRELUDE + code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        busy = proc.returncode != 0 and "Another calibre program" in proc.stderr
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if proc.returncode != 0:
        raise RuntimeError(f"calibre-debug failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def rename_items(library: Path, field: str, renames: dict[int, str]) -> None:
    """What calibre desktop does on a rename in the Tag browser; renaming to an existing
    name merges the two items."""
    run_calibre_debug(
        f"ldb = db({str(library)!r})\n"
        f"ldb.new_api.rename_items({field!r}, {renames!r})\n"
        "ldb.close()\n"
    )
