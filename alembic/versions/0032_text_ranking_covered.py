"""text ranking: a memory's score one expression; pass 2 without the sets pass 1 scored whole

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-03

A memory's score was a subquery per memory over its words unnested; with up to 32 query words it is one
expression, a term per word (memagent.store.text_inline). Pass 2 no longer searches the index for sets of
words holding a pair pass 1 read whole, whose memories it had scored already (memagent.store.text_covered).
The result is unchanged (the exact BM25 top).
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.COVERED_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.COVERED_DOWNGRADE:
        op.execute(statement)
