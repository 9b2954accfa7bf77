"""SQLAlchemy 2 ORM: the memories table, the record of the embedding space, and the text statistics.

The revisions in alembic/ create the schema; these classes must agree with them, and a test checks that
they do (Alembic's compare_metadata against a migrated database is empty).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from memagent.store import hnsw
from memagent.store.vector_format import vector_text


class Float32Vector(Vector):
    """pgvector's column type, binding values with vector_text."""

    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        def process(value: Any) -> str | None:
            return None if value is None else vector_text(value)

        return process


class Base(DeclarativeBase):
    """Declarative base of memagent's tables."""


class MemoryRow(Base):
    """One remembered text with its embedding (a row; callers get memagent.records dataclasses)."""

    __tablename__ = "memories"
    # Revision 0012 also sets the table's toast_tuple_target to 8160: an embedding stays in its row unless
    # the row would not fit a page (a storage parameter; compare_metadata does not look at those).

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(200), nullable=False)
    session_id: Mapped[str] = mapped_column(String(200), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # The dimension is fixed per database by the first migration (MEMAGENT_EMBEDDING_DIM: 1536 for
    # text-embedding-3-small, 384 for the bundled local model) and changed only by `memagent reembed`, so
    # the ORM type leaves it open. NULL while the embedding is pending (the provider failed; revision 0005).
    embedding: Mapped[Any] = mapped_column(Float32Vector(), nullable=True)
    embedding_model: Mapped[str] = mapped_column(String(200), nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Full-text search (revisions 0002, 0007): kept by PostgreSQL itself, never written by memagent; it reads
    # the first 100,000 characters (a tsvector holds at most 1 MB).
    content_tsv: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector('english'::regconfig, left(content, 100000))", persisted=True)
    )

    # Memory that learns (revision 0013): what kind of memory, how important, and its validity in
    # conversation time (created_at .. invalid_at) and in belief time (learned_at .. expired_at; learned_at
    # NULL on rows stored before 0013: learned at created_at). Learning never overwrites or deletes.
    kind: Mapped[str] = mapped_column(String(16), nullable=False, server_default="exchange")
    importance: Mapped[float] = mapped_column(REAL, nullable=False, server_default="0.5")
    invalid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    learned_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, server_default=func.now()
    )
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    superseded_by: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("memories.id", ondelete="SET NULL"), nullable=True
    )
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    extracted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Whether the HNSW graph holds it (revision 0028): false from a one-statement store until its indexing
    # step (memagent.store.deferred); recall finds those by an exact scan meanwhile.
    indexed: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=true())

    __table_args__ = (
        UniqueConstraint("namespace", "content_hash", name="uq_memories_namespace_content_hash"),
        CheckConstraint("kind IN ('exchange', 'fact', 'summary')", name="ck_memories_kind"),
        CheckConstraint("importance >= 0 AND importance <= 1", name="ck_memories_importance"),
        Index(
            "ix_memories_superseded_by", "superseded_by", postgresql_where=text("superseded_by IS NOT NULL")
        ),
        # Full-text search within a namespace: each word keyed by its namespace (revision 0017,
        # memagent.store.text_terms), without a pending list (revision 0016).
        Index(
            "ix_memories_ns_lexemes",
            text("memagent_ns_lexemes(namespace, content_tsv)"),
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ),
        Index("ix_memories_scope_recent", "namespace", "session_id", "created_at"),
        # Recall of one kind: facts or summaries among many exchanges (revision 0022; revision 0023 adds
        # statistics on namespace and kind together, which Alembic does not compare).
        Index("ix_memories_kind", "namespace", "kind"),
        Index("ix_memories_pending", "id", postgresql_where=text("embedding IS NULL")),
        # Key-value items by key (revision 0015; memagent.store.items).
        Index(
            "ix_memories_item_key",
            "namespace",
            text("((metadata -> 'store_item') ->> 'key')"),
            postgresql_where=text("metadata ? 'store_item'"),
        ),
        # Built by memagent.store.hnsw.create_sql (the vector kind; halfvec is an expression over this),
        # partial: the memories not yet indexed are found through the next one (revision 0028).
        Index(
            hnsw.INDEX_NAME,
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": hnsw.M, "ef_construction": hnsw.EF_CONSTRUCTION},
            postgresql_ops={"embedding": hnsw.OPCLASS["vector"]},
            postgresql_where=text(hnsw.PREDICATE),
        ),
        # The memories not in the graph yet, oldest first: a few at most (revision 0028,
        # memagent.store.deferred).
        Index("ix_memories_unindexed", "id", postgresql_where=text(f"NOT {hnsw.PREDICATE}")),
    )


class EmbeddingSpace(Base):
    """The embedding model and dimension whose vectors the database holds (one row, set at first write)."""

    __tablename__ = "embedding_space"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    dimension: Mapped[int] = mapped_column(Integer, nullable=False)
    # Which HNSW index serves recall (revision 0004; memagent.store.hnsw): vector or halfvec.
    index_kind: Mapped[str] = mapped_column(String(20), nullable=False, server_default="vector")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class EmbeddingStaging(Base):
    """Vectors of the model a `memagent reembed` is moving to, waiting for the switch-over (revision 0003)."""

    __tablename__ = "embedding_staging"

    memory_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    # Any dimension: it holds the target model's vectors, whatever their size.
    embedding: Mapped[Any] = mapped_column(Float32Vector(), nullable=False)
    # The target's dimension (revision 0010; NULL on rows staged before it, which count as another target's).
    dimension: Mapped[int | None] = mapped_column(Integer, nullable=True)


class NamespaceGraph(Base):
    """A namespace given an HNSW graph of its own (revision 0034; memagent.store.namespace_graphs)."""

    __tablename__ = "namespace_graphs"

    namespace: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class TextStats(Base):
    """Per namespace: how many memories and their total length, for BM25 (revision 0011; kept by triggers)."""

    __tablename__ = "memory_text_stats"

    namespace: Mapped[str] = mapped_column(String(200), primary_key=True)
    docs: Mapped[int] = mapped_column(BigInteger, nullable=False)
    total_len: Mapped[int] = mapped_column(BigInteger, nullable=False)


class TermStats(Base):
    """Per namespace and lexeme: document frequency and the bounds MaxScore prunes with (revision 0011)."""

    __tablename__ = "memory_term_stats"

    namespace: Mapped[str] = mapped_column(String(200), primary_key=True)
    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    df: Mapped[int] = mapped_column(BigInteger, nullable=False)
    max_tf: Mapped[int] = mapped_column(Integer, nullable=False)
    min_dl: Mapped[int] = mapped_column(Integer, nullable=False)


class MemorySource(Base):
    """A fact or summary and a memory it came from (revision 0013)."""

    __tablename__ = "memory_sources"

    memory_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True
    )
    source_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True
    )
    namespace: Mapped[str] = mapped_column(String(200), nullable=False)

    __table_args__ = (Index("ix_memory_sources_source", "source_id"),)


class MemoryEvent(Base):
    """One change learning made to a namespace's memories, with the model's reason (revision 0013)."""

    __tablename__ = "memory_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(200), nullable=False)
    memory_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("memories.id", ondelete="CASCADE"), nullable=True
    )
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    related_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("memories.id", ondelete="SET NULL"), nullable=True
    )
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint(
            "action IN ('add', 'update', 'invalidate', 'noop', 'extract', 'summarize', 'archive')",
            name="ck_memory_events_action",
        ),
        Index("ix_memory_events_memory", "memory_id"),
        Index("ix_memory_events_related", "related_id", postgresql_where=text("related_id IS NOT NULL")),
        Index("ix_memory_events_namespace", "namespace", "created_at"),
        Index(
            "ix_memory_events_fact_changes",
            "namespace",
            "created_at",
            "id",
            postgresql_where=text("action IN ('add', 'update', 'invalidate')"),
        ),
    )
