"""embedding nullable again: repairs databases where an earlier `memagent reembed` re-added NOT NULL

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Revision 0005 made memories.embedding nullable (a memory may wait for its embedding while the provider is
down). `memagent reembed` before this revision restated the column and made it NOT NULL again, so on those
databases a memory stored during a provider outage failed instead of waiting. DROP NOT NULL is a no-op where
the column is nullable already.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE memories ALTER COLUMN embedding DROP NOT NULL")


def downgrade() -> None:
    pass  # 0005 already made the column nullable: there is nothing to take back
