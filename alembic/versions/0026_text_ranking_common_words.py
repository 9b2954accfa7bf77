"""text ranking: fewer memories read for common words, in pass 1 and in pass 2's fallback

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01

When fewer than `depth` memories hold the three rarest query words, pass 1 scored those holding two of them,
the second and third together included: two common words ("maria" and "go") could be thousands of memories
read only to set the threshold. That pair is now read only when it is expected to hold no more memories
than the step that would run in its place reads. And when pass 2 has too many sets of words to search one by
one, it searches the index for their first words instead of every memory holding any of them
(memagent.store.text_pairs). The result is unchanged (the exact BM25 top).
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.PAIRS_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.PAIRS_DOWNGRADE:
        op.execute(statement)
