"""Expand/contract proof for every migration, on SQLite and a real PostgreSQL.

For each revision R with predecessor P: build the schema at P, write with P's own view of
the tables (reflected at P: what the previous release knows), upgrade to R, then run the
previous release's reads and writes again, on the new schema, with the same frozen view.
If R dropped or renamed a column, tightened one, or added a NOT NULL column without a
default, those statements fail. Rollback to the previous release depends on this.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from lectern_app.accounts.db import alembic_config, current_revision, make_engine, migrate
from lectern_app.accounts.models import Base

from .accounts_support import db_url, postgres_server

__all__ = ["db_url", "postgres_server"]


def revision_pairs() -> list[tuple[str, str]]:
    script = ScriptDirectory.from_config(alembic_config())
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    return list(itertools.pairwise(chain))


def test_migration_chain_is_linear_and_nonempty() -> None:
    assert revision_pairs(), "expected at least two revisions"
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1


_counter = itertools.count(1000)


def _value(col: sa.Column[Any], fk_values: dict[str, Any]) -> Any:
    for fk in col.foreign_keys:
        return fk_values[fk.target_fullname]
    n = next(_counter)
    t = col.type
    if isinstance(t, sa.Boolean):
        return False
    if isinstance(t, sa.Integer):
        return n
    if isinstance(t, sa.Float | sa.Numeric):
        return 0.5
    if isinstance(t, sa.DateTime):
        return datetime.now(UTC)
    if isinstance(t, sa.String) and t.length:
        return f"v{n}"[: t.length]
    return f"v{n}"


def _write_as_previous_release(conn: sa.Connection, md: sa.MetaData) -> dict[str, int]:
    """Insert, update and read back one row per table with only the columns P knows."""
    fk_values: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for table in md.sorted_tables:
        if table.name == "alembic_version":
            continue
        row = {c.name: _value(c, fk_values) for c in table.columns}
        conn.execute(table.insert().values(**row))
        for c in table.columns:
            fk_values[f"{table.name}.{c.name}"] = row[c.name]
        pk = [c for c in table.primary_key.columns]
        where = sa.and_(*(c == row[c.name] for c in pk))
        text_cols = [
            c
            for c in table.columns
            if isinstance(c.type, sa.String) and not c.foreign_keys and c not in pk and not c.unique
        ]
        if text_cols:
            conn.execute(
                table.update().where(where).values({text_cols[0].name: f"u{next(_counter)}"})
            )
        got = conn.execute(sa.select(table).where(where)).mappings().one()
        assert set(got.keys()) == {c.name for c in table.columns}
        counts[table.name] = conn.execute(
            sa.select(sa.func.count()).select_from(table)
        ).scalar_one()
    return counts


@pytest.mark.parametrize("pair", revision_pairs(), ids=lambda p: f"{p[0]}->{p[1]}")
def test_previous_release_runs_on_new_schema(db_url: str, pair: tuple[str, str]) -> None:
    prev, new = pair
    engine = make_engine(db_url)
    try:
        migrate(engine, prev)
        assert current_revision(engine) == prev
        frozen = sa.MetaData()
        frozen.reflect(engine)  # the previous release's view of the schema
        frozen.remove(frozen.tables["alembic_version"])
        with engine.begin() as conn:
            before = _write_as_previous_release(conn, frozen)

        migrate(engine, new)  # the new release starts and expands the schema
        assert current_revision(engine) == new
        inspector = sa.inspect(engine)
        for table in frozen.sorted_tables:
            cols = {c["name"]: c for c in inspector.get_columns(table.name)}
            for c in table.columns:
                assert c.name in cols, f"{new} dropped/renamed {table.name}.{c.name}"
                if c.nullable:
                    assert cols[c.name]["nullable"], f"{new} tightened {table.name}.{c.name}"
            for name, info in cols.items():
                if name not in table.columns:
                    assert info["nullable"] or info.get("default") is not None, (
                        f"{new} added NOT NULL {table.name}.{name} without a default"
                    )
        with engine.begin() as conn:  # the previous release keeps working (rollback)
            after = _write_as_previous_release(conn, frozen)
        assert all(after[t] == before[t] + 1 for t in before)
    finally:
        engine.dispose()


def test_head_schema_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        inspector = sa.inspect(engine)
        for table in Base.metadata.sorted_tables:
            cols = {c["name"] for c in inspector.get_columns(table.name)}
            assert cols == {c.name for c in table.columns}, table.name
        migrate(engine)  # idempotent
    finally:
        engine.dispose()


def test_head_constant_is_alembics_head() -> None:
    from lectern_app.accounts.db import HEAD, head_revision

    assert head_revision() == HEAD  # bump db.HEAD with every new migration
