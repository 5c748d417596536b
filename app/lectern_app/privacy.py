"""DATA_DIR is private to the app: users' password hashes, the signing key, reading data."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("lectern")


def private_dir(path: Path) -> None:
    """Create `path` 0700, or take group/other access away from one the app owns (a data
    directory made 0755 by an older release or by hand). One owned by someone else is
    left alone: the host's provisioning decides about it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, 0o700)
        log.info("DATA_DIR %s made private (0700)", path)
