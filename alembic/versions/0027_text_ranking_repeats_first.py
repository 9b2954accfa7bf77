"""text ranking: short of depth, a common word's memories holding it more than once are read first

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-01

When fewer than `depth` memories hold the rarest query words, pass 1 read every memory holding the next
word, however common ("What Console does Nate own?": 29,962 of a 100,000-memory namespace). For a word
held by at least 20 x depth memories it now reads those holding it more than once first (the full-text
index's second key); when they complete the depth, pass 2 bounds the rest as holding it once, and reads
them only if that can still reach the threshold (memagent.store.text_repeats). The result is unchanged
(the exact BM25 top).
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.REPEATS_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.REPEATS_DOWNGRADE:
        op.execute(statement)
