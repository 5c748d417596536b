"""Alembic migrations of the accounts database (expand/contract: see versions/)."""
