"""staging table for `memagent reembed`: new vectors wait here until the switch-over

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The vector column has no fixed dimension: it holds the target model's vectors, whatever their size.
    op.create_table(
        "embedding_staging",
        sa.Column(
            "memory_id", sa.BigInteger(), sa.ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("embedding", pgvector.sqlalchemy.Vector(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("embedding_staging")
