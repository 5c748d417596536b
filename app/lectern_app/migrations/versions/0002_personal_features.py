"""Favorites, reading progress, reading lists, KOReader sync; users.kosync_key_hash.

Revision ID: 0002
Revises: 0001
Expand only: new tables and one NULLABLE column on users, so release 0001 keeps
inserting and reading users on this schema (tests/app/test_migrations.py proves it).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _user_fk() -> sa.Column[int]:
    return sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("kosync_key_hash", sa.String(255), nullable=True))
    op.create_table(
        "favorites",
        _user_fk(),
        sa.Column("book_id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "reading_progress",
        _user_fk(),
        sa.Column("book_id", sa.Integer, primary_key=True),
        sa.Column("percentage", sa.Float, nullable=False),
        sa.Column("location", sa.Text, nullable=True),
        sa.Column("device", sa.String(100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "reading_lists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "name", name="uq_reading_lists_user_name"),
    )
    op.create_index("ix_reading_lists_user_id", "reading_lists", ["user_id"])
    op.create_table(
        "reading_list_items",
        sa.Column(
            "list_id",
            sa.Integer,
            sa.ForeignKey("reading_lists.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("book_id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "kosync_progress",
        _user_fk(),
        sa.Column("document", sa.String(64), primary_key=True),
        sa.Column("progress", sa.Text, nullable=False),
        sa.Column("percentage", sa.Float, nullable=False),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("device_id", sa.String(100), nullable=False),
        sa.Column("timestamp", sa.Integer, nullable=False),
        sa.Column("book_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_kosync_progress_book", "kosync_progress", ["user_id", "book_id"])


def downgrade() -> None:
    op.drop_table("kosync_progress")
    op.drop_table("reading_list_items")
    op.drop_table("reading_lists")
    op.drop_table("reading_progress")
    op.drop_table("favorites")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("kosync_key_hash")
