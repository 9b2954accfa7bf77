"""memory_term_stats vacuumed at 2% dead rows instead of 20%

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-03

Every stored memory updates the statistics row of each of its words (memagent.store.text_stats), about 30
new row versions; PostgreSQL's autovacuum waits for dead versions to reach a fifth of a table, about
370,000 in a table of 1.8 million words (1,000,000 memories). A store's upserts slow down as they pile up:
at 1,000,000 x 384 storing one memory went from p50 2.0-2.4 / p95 4.3-5.0 ms to 2.8-3.1 / 5.5-9.3 ms with
330,000 dead versions, in turn (docs/benchmarks.md, "The statistics' dead rows"). Vacuumed at 2%, the
table keeps at most about 37,000, where no difference was seen (p95 3.7-4.0 ms at 60,000).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE memory_term_stats SET (autovacuum_vacuum_scale_factor = 0.02)")


def downgrade() -> None:
    op.execute("ALTER TABLE memory_term_stats RESET (autovacuum_vacuum_scale_factor)")
