"""Alembic environment: run against the connection lectern_app.accounts.db hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from lectern_app.accounts.models import Base

config = context.config
connection: Connection | None = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the app always passes a connection
    raise RuntimeError("lectern migrations run through lectern_app.accounts.db.migrate()")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
