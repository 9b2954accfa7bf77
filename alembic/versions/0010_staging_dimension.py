"""embedding_staging.dimension: staged vectors are keyed by model and dimension

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

A `memagent reembed --dim 128` killed halfway, then `--dim 64` of the same model, found the 128-dimension
vectors staged and tried to switch with them ("expected 64 dimensions, not 128"), forever. With the
dimension recorded, a re-embedding stages only vectors of its own model and dimension and discards others.
Rows staged before this revision have none: they count as another target's.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("embedding_staging", sa.Column("dimension", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("embedding_staging", "dimension")
