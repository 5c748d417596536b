"""Libraries made by Calibre's own calibredb, built once per session and copied per test."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lectern_app.config import Settings
from lectern_app.demo import (
    BookSpec,
    add_books,
    calibredb_path,
    make_epub,
    random_specs,
    run_calibredb,
)
from lectern_app.main import create_app

if calibredb_path() is None:  # pragma: no cover
    pytest.exit("calibredb is required: run scripts/ensure-host-packages.sh", returncode=4)

AWKWARD = [
    BookSpec(
        title="Ḱafka on the Shore — naïve café",
        authors=["Zed Last", "Amy First", "Mid Dle"],  # a set, non-alphabetical order
        tags=["Fiction", "Magic Realism"],
        series="Série Ñoño",
        series_index=1.5,
        publisher="Éditions Ünïcode",
        languages=["en", "fr"],
        rating=7,
        comments="<p>A <b>dreamlike</b> story about a talking cat and a library.</p>",
        isbn="9780000000002",
        pubdate="1999-03-04",
        extra_identifiers={"goodreads": "4929"},
    ),
    BookSpec(
        title="كتاب الرمل",  # RTL (Arabic)
        authors=["خورخي بورخيس"],
        tags=["שירה"],  # RTL (Hebrew) tag
        languages=["ar"],
        cover=False,
        comments="<p>نص عربي</p>",
    ),
    BookSpec(
        title="The Many Hands",
        authors=["Ula Fifth", "Bo Second", "Cy Third", "Al First", "Di Fourth"],
        series="Série Ñoño",
        series_index=0.25,
        tags=["Anthology"],
        rating=10,
        cover=False,
    ),
    BookSpec(
        title="Zoë's Ångström Notebook",
        authors=["Zoë Ångström"],
        series="Série Ñoño",
        series_index=2.75,
        publisher="Gallimard",
        rating=4,
        languages=["de"],
        comments="<p>Mentions a café in the comments only: xylophone.</p>",
    ),
    BookSpec(
        title="Xylophone Lessons",
        authors=["Amy First"],
        tags=["Music"],
        comments="<p>Plain.</p>",
    ),
]
N_RANDOM = 25


def _build(dest: Path, work: Path) -> dict[str, Any]:
    dest.mkdir(parents=True)
    add_books(dest, AWKWARD + random_specs(N_RANDOM, seed=3, cover_every=3), work)
    # a second and a third format for book 1, a TXT for book 3
    txt = work / "extra.txt"
    txt.write_text("Plain text edition\n" * 50)
    run_calibredb(dest, "add_format", "1", str(txt))
    pdf = work / "extra.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% fake but fine for serving\n" + b"0" * 4096)
    run_calibredb(dest, "add_format", "1", str(pdf))
    run_calibredb(dest, "add_format", "3", str(txt))
    # custom columns of several types, set through calibre itself
    run_calibredb(dest, "add_custom_column", "--is-multiple", "genre", "Genre", "text")
    run_calibredb(dest, "add_custom_column", "pages", "Pages", "int")
    run_calibredb(dest, "add_custom_column", "read", "Read", "bool")
    run_calibredb(dest, "add_custom_column", "notes", "Notes", "comments")
    run_calibredb(
        dest,
        "set_metadata",
        "1",
        "--field",
        "#genre:Surreal,Cats",
        "--field",
        "#pages:505",
        "--field",
        "#read:true",
        "--field",
        "#notes:<p>Loved it</p>",
    )
    run_calibredb(dest, "set_metadata", "4", "--field", "#pages:12", "--field", "#read:false")
    listing = json.loads(run_calibredb(dest, "list", "--for-machine", "--fields", "all"))
    return {"listing": listing}


@pytest.fixture(scope="session")
def built_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    base = tmp_path_factory.mktemp("calibre")
    info = _build(base / "library", base / "work")
    return base / "library", info["listing"]


@pytest.fixture(scope="session")
def empty_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("empty") / "library"
    run_calibredb(dest, "list")
    assert (dest / "metadata.db").is_file()
    return dest


@pytest.fixture
def library(built_library: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> Path:
    """A private copy of the session library (tests may change it)."""
    dest = tmp_path / "lib"
    shutil.copytree(built_library[0], dest)
    return dest


@pytest.fixture
def listing(built_library: tuple[Path, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return built_library[1]


def make_settings(library: Path | None, data_dir: Path, **kw: Any) -> Settings:
    base = Settings.from_env()
    values = {f: getattr(base, f) for f in base.__dataclass_fields__}
    values.update(library_path=library, data_dir=data_dir, watch=False, busy_timeout=0.5)
    values.update(kw)
    return Settings(**values)


@pytest.fixture
def client_for(tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(library: Path | None, **kw: Any) -> TestClient:
        app = create_app(make_settings(library, tmp_path / "data", **kw))
        c = TestClient(app, raise_server_exceptions=False)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(library: Path, client_for: Any) -> TestClient:
    c: TestClient = client_for(library)
    return c


@pytest.fixture(scope="session")
def shared_client(
    built_library: tuple[Path, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """Read-only tests share one app over the session library (never modified)."""
    data = tmp_path_factory.mktemp("data")
    app = create_app(make_settings(built_library[0], data))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def new_epub(tmp: Path, title: str, **kw: Any) -> Path:
    return make_epub(BookSpec(title=title, **kw), tmp / f"{abs(hash(title))}.epub")
