"""pending embeddings: a memory may be stored before its vector (provider down), and embedded later

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The HNSW index skips NULL vectors; recall reads them through full-text search until `backfill`.
    op.execute("ALTER TABLE memories ALTER COLUMN embedding DROP NOT NULL")
    op.execute("CREATE INDEX ix_memories_pending ON memories (id) WHERE embedding IS NULL")


def downgrade() -> None:
    # Memories still waiting for a vector cannot satisfy NOT NULL: downgrading requires `memagent backfill`.
    op.execute("DROP INDEX ix_memories_pending")
    op.execute("ALTER TABLE memories ALTER COLUMN embedding SET NOT NULL")
