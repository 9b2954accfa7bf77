"""full-text index keyed by namespace and word: a search reads its namespace's entries of the query's words

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30

Revision 0011's GIN index on (namespace, content_tsv) intersected a namespace's whole posting list with
each query word's posting list across all namespaces. This one indexes memagent_ns_lexemes(namespace,
content_tsv): each word prefixed by a hash of its namespace, so a search reads only that namespace's entries
of its words (memagent.store.text_terms). Building it reads every memory once (79 s for a million here).
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import roles, text_schema

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.TERMS_UPGRADE:
        op.execute(statement)
    op.execute(roles.GRANT_SQL)  # memagent_app runs the index's function on every write


def downgrade() -> None:
    for statement in text_schema.TERMS_DOWNGRADE:
        op.execute(statement)
