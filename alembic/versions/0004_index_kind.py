"""embedding_space.index_kind: which HNSW index recall is served by (vector, or halfvec for large tables)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from memagent.store import hnsw

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Recorded here rather than read off the index: a bulk import drops the index while it loads, and the
    # rebuild (or the repair after a killed import) must know which kind to build (memagent.store.hnsw).
    op.add_column(
        "embedding_space",
        sa.Column("index_kind", sa.String(20), nullable=False, server_default="vector"),
    )
    op.create_check_constraint(
        "ck_embedding_space_index_kind", "embedding_space", "index_kind IN ('vector', 'halfvec')"
    )


def downgrade() -> None:
    # A halfvec index would not match the vector queries of older revisions: put the plain one back.
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = '{hnsw.INDEX_NAME}'"
        f" AND indexdef LIKE '%halfvec%') THEN DROP INDEX {hnsw.INDEX_NAME};"
        f" {hnsw.create_sql('vector', 0, deferred=False)}; END IF; END $$"
    )
    op.drop_constraint("ck_embedding_space_index_kind", "embedding_space", type_="check")
    op.drop_column("embedding_space", "index_kind")
