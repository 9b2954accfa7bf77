"""full-text recall: the rarest terms' holders scored at once, and pass 2 only over terms not yet covered

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30

memagent_text_ranking plans each of its steps anew. When the query's rarest terms are rare, pass 1 scores
all their holders in one statement (not three); pass 2 builds its candidate sets only from terms whose
holders were not all scored already, and reads nothing when none can reach the threshold. The same exact
result: memagent.store.text_passes.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.PASSES_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.PASSES_DOWNGRADE:
        op.execute(statement)
