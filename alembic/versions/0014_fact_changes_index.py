"""an index on the events that change facts: consolidation's staleness check reads one entry

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30

Consolidation applies the model's decisions only if the namespace's facts have not changed since the
model saw them: it reads the newest add, update or invalidate event of the namespace, twice per learnt
exchange. On the (namespace, created_at) index that read walked back over every newer event of other
actions (one `extract` per exchange, one `archive` per compressed exchange): 300k such events cost
100-143 ms per read. This partial index holds only the events that change facts, so the read is one
index entry whatever else the namespace did.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_memory_events_fact_changes ON memory_events (namespace, created_at, id)"
        " WHERE action IN ('add', 'update', 'invalidate')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_memory_events_fact_changes")
