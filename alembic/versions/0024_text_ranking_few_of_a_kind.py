"""text ranking: few memories of the kinds asked for are scored in one pass, read by their kind

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01

A text or hybrid recall of facts or summaries in a large namespace of exchanges ranked the namespace's
matches with the pruned ranking and dropped the exchanges for their kind. When the namespace holds at most
2,000 memories of the kinds asked for, the ranking now scores each of them holding a query word in one
pass, read through revision 0022's index (memagent.store.text_kinds). Same scores: the statistics stay the
namespace's.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.KINDS_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.KINDS_DOWNGRADE:
        op.execute(statement)
