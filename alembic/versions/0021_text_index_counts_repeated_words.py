"""full-text index: a word held more than once is keyed a second time, and the ranking's pass 2 reads by both

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01

Pass 2 of the text ranking read every memory holding a set of query words whose bounds could reach the
threshold, each word bounded by its most favourable memory: most memories, holding common words once, were
read and scored for nothing (memagent.store.text_tiers). The index now also keys the words a memory holds
more than once, so pass 2 bounds a word held once as such. Rebuilding the index reads every memory once
(63 s for a million here), and writes to memories wait until it is done.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.TIERS_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.TIERS_DOWNGRADE:
        op.execute(statement)
