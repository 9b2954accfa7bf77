"""full-text statistics kept at write time, and a BM25 ranking that scores only what can reach the top

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

Text recall counted the namespace's rows and each query term's documents and measured every matching
memory on every call: linear in the namespace (about a second per recall at 100,000 memories). Now:
- memory_text_stats (per namespace: memories, total length) and memory_term_stats (per namespace and
  lexeme: document frequency, the largest term frequency and the shortest memory it occurs in) are kept by
  statement triggers on memories, in the same transaction as the write: a memory is counted, and findable,
  the moment it is committed. Both tables are under the same row-level security as memories.
- memagent_text_ranking(namespace, session, before, text, depth) ranks by BM25 with those statistics,
  scoring only memories that can still reach the top (memagent.store.text_ranking explains it); exact, like
  the query it replaces.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import roles, text_schema

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.UPGRADE:
        op.execute(statement)
    op.execute(roles.GRANT_SQL)


def downgrade() -> None:
    for statement in text_schema.DOWNGRADE:
        op.execute(statement)
