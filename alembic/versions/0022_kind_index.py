"""an index on memories by namespace and kind: a recall of one kind reads that kind, not the namespace

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01

A recall limited to facts or summaries (`recall --kind`, learning's search for the nearest current facts
on every chat turn) had no index for its kind: in a namespace of exchanges with a few facts, the planner
either ranked the namespace's every row to find them, or sent the query through the HNSW index, whose
iterative scan gives up before it finds a sliver, and then the scope was ranked exactly
(memagent.store.search_sql): the namespace was read once or twice per recall. On a 400k-memory namespace
with 76 facts: facts-only hybrid 250 ms -> 3.9 ms, summaries (none) 300 ms -> 0.7 ms (docs/benchmarks.md).
Not partial: it also serves `--kind exchange` in a namespace of facts and summaries. B-tree deduplication
keeps it small (few distinct keys). A plain CREATE INDEX, as revision 0015's: it holds writes for the
build (0.26 s on 91k rows; seconds on millions). Revision 0023 gives the planner the statistics to use it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_memories_kind ON memories (namespace, kind)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_memories_kind")
