"""text ranking: pass 2 searches the index by the first three words its sets share, however few sets

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-02

Pass 2 searched each set of query words reaching its threshold as an AND of the index, one search per set,
and by the sets' first three words only with more than 64 sets. An AND of common words costs the index
about as much as its rarest word's postings however few memories hold it all, so sets sharing their first
three words are now searched by them, each such prefix once, however few sets; a set alone with its
prefix is still searched whole (memagent.store.text_prefixes). The result is unchanged (the exact BM25
top).
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.PREFIXES_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.PREFIXES_DOWNGRADE:
        op.execute(statement)
