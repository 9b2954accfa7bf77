"""memories.indexed: a memory stored by the one-statement path joins the HNSW graph after its store

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-02

Inserting a memory into the HNSW graph was most of storing one at 1536 dimensions (1.4 ms at p50, 2.6-5 ms
at p95 of a 4.5-8 ms store on 110k memories: docs/benchmarks.md). The index is now partial, over the
memories whose `indexed` is true; the one-statement store (a chat turn's, `remember`'s) commits its memory
with `indexed` false, and a step after it (memagent.store.deferred) sets it true, which inserts it into the
graph. Meanwhile recall finds it by an exact scan of its scope's memories not yet indexed (a partial b-tree
keeps them at hand: memagent.store.search_sql), so a memory just stored is found at once, by its vector too.
Existing memories are all indexed (the column's default); the HNSW index is rebuilt with the predicate (as
`memagent index` builds it: minutes on a million memories), only if it is in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from memagent.store import hnsw

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _index() -> tuple[hnsw.IndexKind, int] | None:
    """The kind and dimension of the HNSW index in place (None: none is)."""
    connection = op.get_bind()
    if not hnsw.IndexRepository(connection).present():
        return None
    row = connection.execute(sa.text("SELECT index_kind, dimension FROM embedding_space LIMIT 1")).first()
    return ("halfvec", int(row[1])) if row is not None and row[0] == "halfvec" else ("vector", 0)


def upgrade() -> None:
    op.add_column("memories", sa.Column("indexed", sa.Boolean(), nullable=False, server_default=sa.true()))
    # By id alone: an indexing step takes them oldest first across its scope (its namespace is a filter of
    # row-level security, not an index condition), and there are a few at most.
    op.execute("CREATE INDEX ix_memories_unindexed ON memories (id) WHERE NOT indexed")
    op.execute("ANALYZE memories (indexed)")  # (with no statistics the planner takes half as not indexed)
    built = _index()
    if built is not None:
        op.execute(f"DROP INDEX {hnsw.INDEX_NAME}")
        hnsw.IndexRepository(op.get_bind()).create(*built)


def downgrade() -> None:
    built = _index()
    op.drop_column("memories", "indexed")  # (drops both partial indexes with it)
    if built is not None:
        op.execute(hnsw.create_sql(built[0], built[1], deferred=False))
