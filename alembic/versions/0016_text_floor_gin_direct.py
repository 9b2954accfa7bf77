"""full-text recall: a floor under the ranking (hybrid: a fifth of the best), the index without a pending list

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

- memagent_text_ranking returned the exact BM25 top `depth`; when fewer than `depth` memories hold a query's
  rarer words, completing it meant scoring every memory holding a word nearly all of them hold, each for
  almost nothing. It takes a ninth argument, a floor: the exact BM25 top `depth` among the memories
  scoring at least that share of the best, the others never read (memagent.store.text_floor). Hybrid
  recall passes 0.2, text mode 0 (the exact top, as before).
- The full-text GIN index gets fastupdate off: its pending list, read whole by every full-text search, is
  merged now and not used again (memagent.store.text_schema).
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.FLOOR_UPGRADE:
        op.execute(statement)
    op.execute(text_schema.GIN_DIRECT)


def downgrade() -> None:
    op.execute(text_schema.GIN_PENDING)
    for statement in text_schema.FLOOR_DOWNGRADE:
        op.execute(statement)
