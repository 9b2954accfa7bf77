"""statistics on namespace and kind together: the planner sees how few facts a namespace holds

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01

Revision 0022's index serves a recall of one kind only if the planner expects few rows of that kind in
the namespace. Without statistics on the two columns together it multiplies the namespace's share of the
table by the kind's: when another namespace holds many facts, a namespace with a handful is expected to
hold hundreds, the planner sends its facts-only recall through the HNSW index, whose iterative scan reads
~20,000 rows before it gives up, and the exact branch ranks the scope after it (an outside read: 50 facts
among 60k exchanges, 2,500 facts elsewhere: 1,688 rows expected for 47, 64 ms instead of 3 ms). A
most-common-values list over (namespace, kind) gives the planner the real pairs (docs/benchmarks.md,
"One kind through its own index"); autovacuum's ANALYZE keeps it current.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE STATISTICS memories_namespace_kind (mcv) ON namespace, kind FROM memories")
    op.execute("ANALYZE memories")


def downgrade() -> None:
    op.execute("DROP STATISTICS memories_namespace_kind")
