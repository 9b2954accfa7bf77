"""text ranking: a word said more than once counted by ts_rank_cd

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-03

A memory's score counted a word it says more than once with a subquery (its tsvector filtered to the word,
unnested), a plan of its own for every query word each time the scoring statement is planned; ts_rank_cd
of the one word with every weight 1 is that count (memagent.store.text_counts). The scores are the same
bits.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.COUNTS_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.COUNTS_DOWNGRADE:
        op.execute(statement)
