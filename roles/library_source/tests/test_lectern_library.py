"""Unit tests of files/lectern-library, run against plain directories (no host needed).

.venv/bin/pytest roles/library_source/tests
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "files" / "lectern-library"


def _load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("lectern_library", str(SCRIPT))
    spec = importlib.util.spec_from_loader("lectern_library", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


tool = _load()


def library(path: Path, books: int, mtime: float | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    database = path / "metadata.db"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE IF NOT EXISTS books (id INTEGER PRIMARY KEY, title TEXT)")
    rows = [(f"b{i}",) for i in range(books)]
    connection.executemany("INSERT INTO books (title) VALUES (?)", rows)
    connection.commit()
    connection.close()
    (path / "Author").mkdir(exist_ok=True)
    (path / "Author" / "book.epub").write_text("epub")
    if mtime is not None:
        os.utime(database, (mtime, mtime))
    return path


def corrupt(database: Path) -> None:
    data = bytearray(database.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # header survives, first page is garbage
    database.write_bytes(bytes(data))


@pytest.fixture()
def layout(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "srv"
    (root / "sources").mkdir(parents=True)
    config = tmp_path / "library-source"
    primary = root / "sources" / "primary"
    replica = root / "sources" / "replica1"
    target = tmp_path / "nas" / "replica"
    config.write_text(
        "# test\nmode=local\n"
        f"path={root / 'library'}\nprimary={primary}\nreplicas={replica}\n"
        f"replica_targets={target}\ncheck=integrity_check\nretry_pause=0\n"
    )
    return dict(root=root, config=config, primary=primary, replica=replica, target=target)


def run(layout: dict[str, Path], *args: str) -> int:
    return int(tool.main(["--config", str(layout["config"]), *args]))


def link(layout: dict[str, Path]) -> str:
    return os.readlink(layout["root"] / "library")


def test_check(tmp_path: Path) -> None:
    assert tool.check(str(library(tmp_path / "ok", 3)))[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    ok, reason = tool.check(str(empty))
    assert not ok and "missing" in reason
    bad = library(tmp_path / "bad", 50)
    corrupt(bad / "metadata.db")
    assert not tool.check(str(bad))[0]


def test_check_command_needs_no_state_file(tmp_path: Path) -> None:
    """The roles check a local library before they have written the state file."""
    missing = str(tmp_path / "no-state-file")
    good = library(tmp_path / "ok", 3)
    assert tool.main(["--config", missing, "check", str(good)]) == 0
    assert tool.main(["--config", missing, "check", "--pragma", "integrity_check", str(good)]) == 0
    assert tool.main(["--config", missing, "check", str(tmp_path / "nothing")]) == 1
    with pytest.raises(FileNotFoundError):
        tool.main(["--config", missing, "switch"])


def test_primary_first_relative_link(layout: dict[str, Path]) -> None:
    library(layout["primary"], 5)
    library(layout["replica"], 4, mtime=4_000_000_000)  # newer, but the primary wins
    assert run(layout, "switch") == 0
    assert link(layout) == "sources/primary"
    assert run(layout, "switch") == 0  # idempotent
    assert link(layout) == "sources/primary"


def test_fallback_and_back(layout: dict[str, Path]) -> None:
    library(layout["primary"], 5)
    library(layout["replica"], 5)
    assert run(layout, "switch") == 0
    hidden = layout["primary"].with_name("primary.away")
    layout["primary"].rename(hidden)
    layout["primary"].mkdir()  # an empty mountpoint is left behind
    assert run(layout, "switch") == 0
    assert link(layout) == "sources/replica1"
    layout["primary"].rmdir()
    hidden.rename(layout["primary"])
    assert run(layout, "switch") == 0
    assert link(layout) == "sources/primary"


def test_corrupt_primary_falls_back(layout: dict[str, Path]) -> None:
    library(layout["primary"], 50)
    library(layout["replica"], 5)
    corrupt(layout["primary"] / "metadata.db")
    assert run(layout, "switch") == 0
    assert link(layout) == "sources/replica1"


def test_nothing_healthy_never_an_empty_dir(layout: dict[str, Path]) -> None:
    layout["primary"].mkdir()
    assert run(layout, "switch") == 2
    assert link(layout) == tool.UNAVAILABLE
    assert not (layout["root"] / "library").exists()


def test_sync_replicas(layout: dict[str, Path]) -> None:
    library(layout["primary"], 7)
    assert run(layout, "sync-replicas") == 0
    copy = layout["target"] / "metadata.db"
    assert sqlite3.connect(copy).execute("select count(*) from books").fetchone() == (7,)
    assert (layout["target"] / "Author" / "book.epub").read_text() == "epub"
    assert not list(layout["target"].glob(".metadata.db*"))


def test_a_source_that_does_not_answer_is_given_up(layout: dict[str, Path]) -> None:
    """A primary whose reads block (here: a writer's EXCLUSIVE lock; for real: a FUSE
    mount whose PC went away) must not stall the switch: the replica takes over."""
    library(layout["primary"], 5)
    library(layout["replica"], 5)
    with open(layout["config"], "a") as fh:
        fh.write("check_timeout=2\n")
    holder = sqlite3.connect(layout["primary"] / "metadata.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # readers now wait for the busy timeout (10 s)
    try:
        assert run(layout, "switch") == 0
        assert link(layout) == "sources/replica1"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run(layout, "switch") == 0
    assert link(layout) == "sources/primary"


def flaky_primary(
    monkeypatch: pytest.MonkeyPatch, layout: dict[str, Path], answers: list[bool]
) -> list[str]:
    """Make the primary's checks answer ``answers`` in turn (then healthy); return the log."""
    real = tool.check_bounded
    asked: list[str] = []

    def check_bounded(directory: str, pragma: str, timeout: float) -> tuple[bool, str]:
        if directory == str(layout["primary"]):
            asked.append(directory)
            if answers:
                return (True, "ok") if answers.pop(0) else (False, "did not answer in time")
        return real(directory, pragma, timeout)  # type: ignore[no-any-return]

    monkeypatch.setattr(tool, "check_bounded", check_bounded)
    return asked


def test_one_slow_check_does_not_leave_the_primary(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flap a CI run caught: one timed-out check of a busy FUSE primary switched the
    link to the replica, and the next run switched it back."""
    library(layout["primary"], 5)
    library(layout["replica"], 5)
    asked = flaky_primary(monkeypatch, layout, [False, True])
    assert run(layout, "switch") == 0  # first decision: confirmed before choosing
    assert link(layout) == "sources/primary" and len(asked) == 2
    asked.clear()
    flaky_primary(monkeypatch, layout, [False, True])
    assert run(layout, "switch") == 0  # on the primary: one failure is not enough
    assert link(layout) == "sources/primary"


def test_failures_in_a_row_leave_the_primary(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    library(layout["primary"], 5)
    library(layout["replica"], 5)
    assert run(layout, "switch") == 0 and link(layout) == "sources/primary"
    with open(layout["config"], "a") as fh:
        fh.write("failover_checks=3\n")
    asked = flaky_primary(monkeypatch, layout, [False, False, False])
    assert run(layout, "switch") == 0
    assert link(layout) == "sources/replica1" and len(asked) == 3
    # on a replica, the primary gets one check per run (no waiting to stay put)
    asked = flaky_primary(monkeypatch, layout, [False])
    assert run(layout, "switch") == 0
    assert link(layout) == "sources/replica1" and len(asked) == 1
    asked = flaky_primary(monkeypatch, layout, [True])
    assert run(layout, "switch") == 0
    assert link(layout) == "sources/primary"
