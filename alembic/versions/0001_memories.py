"""memories table with an HNSW cosine index, and the embedding-space record

Revision ID: 0001
Revises:
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import context, op
from memagent.store import hnsw
from memagent.store.schema import embedding_dim_for_migration

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The vector dimension is chosen once per database, from MEMAGENT_EMBEDDING_DIM or the model's known size.
    dim = embedding_dim_for_migration(context.config)
    if dim > 2000:
        raise ValueError(f"pgvector's HNSW index takes at most 2000 dimensions for vector, not {dim}")
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "memories",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("namespace", sa.String(200), nullable=False),
        sa.Column("session_id", sa.String(200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("embedding", pgvector.sqlalchemy.Vector(dim), nullable=False),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("namespace", "content_hash", name="uq_memories_namespace_content_hash"),
    )
    op.create_index("ix_memories_scope_recent", "memories", ["namespace", "session_id", "created_at"])
    # Stated once, by the index's owner (autogenerate does not render vector indexes).
    op.execute(hnsw.create_sql("vector", dim, deferred=False))
    op.create_table(
        "embedding_space",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_embedding_space_single_row"),
    )


def downgrade() -> None:
    # The vector extension stays: other schemas in the database may use it.
    op.drop_table("embedding_space")
    op.drop_index(hnsw.INDEX_NAME, table_name="memories")
    op.drop_index("ix_memories_scope_recent", table_name="memories")
    op.drop_table("memories")
