"""full-text search reads the first 100,000 characters: a tsvector holds at most 1 MB

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

A one-megabyte memory of distinct words made to_tsvector fail ("string is too long for tsvector") and the
memory could not be stored at all. The content is still stored whole; full-text search reads its beginning,
as the embedding models do.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _column(expression: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_memories_content_tsv")
    op.execute("ALTER TABLE memories DROP COLUMN content_tsv")
    op.execute(
        "ALTER TABLE memories ADD COLUMN content_tsv tsvector "
        f"GENERATED ALWAYS AS (to_tsvector('english'::regconfig, {expression})) STORED"
    )
    op.execute("CREATE INDEX ix_memories_content_tsv ON memories USING gin (content_tsv)")


def upgrade() -> None:
    _column("left(content, 100000)")


def downgrade() -> None:
    _column("content")
