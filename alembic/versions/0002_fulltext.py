"""full-text search: a generated tsvector column with a GIN index, for text and hybrid recall

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # 'english': stemming and stop words for the language most memories are written in; the config must be
    # a constant here (a generated column needs an immutable expression).
    op.execute(
        "ALTER TABLE memories ADD COLUMN content_tsv tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED"
    )
    op.execute("CREATE INDEX ix_memories_content_tsv ON memories USING gin (content_tsv)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_memories_content_tsv")
    op.execute("ALTER TABLE memories DROP COLUMN IF EXISTS content_tsv")
