"""text ranking: the query's words in the order of the bound of a memory holding each once

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-02

The ranking took the query's words in the order of each word's bound at its largest count in a memory, so
a common word said twice in one memory could go before a rarer one: pass 1 read its holders first and
pass 2's searches started with it. They are now ordered by the bound of a memory holding each once
(memagent.store.text_order). The result is unchanged (the exact BM25 top).
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.ORDER_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.ORDER_DOWNGRADE:
        op.execute(statement)
