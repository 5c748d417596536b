"""Lab fixtures: the lab is brought up once per session (idempotent) by the real CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from labtools import BIN, REPO, run


@pytest.fixture(scope="session")
def lab() -> Iterator[Path]:
    run(str(BIN / "appliance"), "lab", "up")
    yield REPO / "inventories" / "lab"
