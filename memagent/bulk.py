"""Bulk reads and writes for export, import and re-embedding: server-side cursors and binary COPY."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from memagent import pgcopy
from memagent.models import Memory
from memagent.repository import RECORD_COLUMNS, NewMemory, Scope, content_hash


class BulkRepository:
    """Many memories at a time, in the caller's session and transaction (never commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def existing(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (namespace, content_hash) pairs are stored already."""
        wanted: dict[str, list[str]] = {}
        for namespace, digest in keys:
            wanted.setdefault(namespace, []).append(digest)
        found: set[tuple[str, str]] = set()
        for namespace, hashes in wanted.items():
            rows = self.session.execute(
                select(Memory.content_hash).where(
                    Memory.namespace == namespace, Memory.content_hash.in_(hashes)
                )
            )
            found |= {(namespace, row.content_hash) for row in rows}
        return found

    def copy_add(self, memories: Sequence[NewMemory]) -> int:
        """Bulk-store memories through binary COPY into a staging table; returns how many were new.

        COPY cannot skip conflicts, so rows land in a temporary table first and move over with
        INSERT … SELECT … ON CONFLICT DO NOTHING (identical content in a namespace is kept once).
        """
        if not memories:
            return 0
        now = datetime.now(UTC)
        self.session.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS memagent_import_stage ("
                " namespace text, session_id text, content text, embedding vector, embedding_model text,"
                " content_hash text, metadata jsonb, created_at timestamptz) ON COMMIT DELETE ROWS"
            )
        )
        payload = pgcopy.encode(
            (
                (
                    m.namespace,
                    m.session_id,
                    m.content,
                    m.embedding,
                    m.embedding_model,
                    content_hash(m.content),
                    m.metadata,
                    m.created_at or now,
                )
                for m in memories
            ),
            ["text", "text", "text", "vector", "text", "text", "jsonb", "timestamptz"],
        )
        raw = self.session.connection().connection.dbapi_connection
        assert raw is not None
        cursor: Any = raw.cursor()
        try:
            cursor.copy_expert(
                "COPY memagent_import_stage FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload)
            )
        finally:
            cursor.close()
        result = self.session.execute(
            text(
                "INSERT INTO memories (namespace, session_id, content, embedding, embedding_model,"
                " content_hash, metadata, created_at)"
                " SELECT namespace, session_id, content, embedding, embedding_model, content_hash, metadata,"
                " created_at FROM memagent_import_stage"
                " ON CONFLICT ON CONSTRAINT uq_memories_namespace_content_hash DO NOTHING"
            )
        )
        self.session.execute(text("TRUNCATE memagent_import_stage"))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def iter_all(self, scope: Scope | None, *, with_embeddings: bool, batch: int = 1000) -> Iterator[Any]:
        """Every memory in scope (or in every namespace), oldest first, streamed from a server-side cursor."""
        columns = [*RECORD_COLUMNS, Memory.embedding] if with_embeddings else list(RECORD_COLUMNS)
        stmt = select(*columns).order_by(Memory.id)
        if scope is not None:
            stmt = stmt.where(scope.where())
        result = self.session.execute(stmt.execution_options(yield_per=batch))
        yield from result
