"""Bulk reads and writes for export, import and re-embedding: server-side cursors and binary COPY."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2.errors
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from memagent.store import pgcopy
from memagent.store.memories import NewMemory, content_hash
from memagent.store.models import MemoryRow
from memagent.store.scope import RECORD_COLUMNS, Scope

_COLUMNS = "namespace, session_id, content, embedding, embedding_model, content_hash, metadata, created_at"


_EXISTING = text(
    "SELECT content_hash FROM memories WHERE namespace = :namespace AND content_hash = ANY(:hashes)"
)
_ENCODERS = pgcopy.encoders(["text", "text", "text", "vector", "text", "text", "jsonb", "timestamptz"])


@dataclass(frozen=True)
class EncodedBatch:
    """Memories as a binary COPY stream, duplicates (same namespace and content) dropped."""

    rows: int
    payload: bytes

    @classmethod
    def of(cls, rows: Sequence[bytes], count: int | None = None) -> EncodedBatch:
        """A batch of rows from encode_row (the caller has dropped duplicates).

        `count` says how many rows there are when some of the pieces hold several rows back to back.
        """
        return cls(len(rows) if count is None else count, pgcopy.stream(rows))


def encode_row(memory: NewMemory, digest: str, now: datetime) -> bytes:
    """One memory as a row of the COPY stream (`now` stands in for a missing created_at)."""
    m = memory
    return pgcopy.encode_row(
        (
            m.namespace,
            m.session_id,
            m.content,
            m.embedding,
            m.embedding_model,
            digest,
            m.metadata,
            m.created_at or now,
        ),
        _ENCODERS,
    )


def encode(memories: Sequence[NewMemory]) -> EncodedBatch:
    """Encode memories for copy_add (pure computation: no database involved)."""
    unique: dict[tuple[str, str], NewMemory] = {}
    for m in memories:
        unique.setdefault((m.namespace, content_hash(m.content)), m)
    now = datetime.now(UTC)
    return EncodedBatch.of([encode_row(m, digest, now) for (_, digest), m in unique.items()])


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
            rows = self.session.execute(_EXISTING, {"namespace": namespace, "hashes": hashes})
            found |= {(namespace, digest) for (digest,) in rows}
        return found

    def copy_add(self, memories: Sequence[NewMemory] | EncodedBatch) -> int:
        """Bulk-store memories through binary COPY; returns how many were new.

        Identical content in a namespace is kept once. COPY cannot skip conflicts, so the batch (duplicates
        within it dropped) is first copied straight into memories under a savepoint: one write per row, the
        fast path when the caller has filtered out stored rows with existing(). If a row turns out to be
        stored already (a concurrent import), the savepoint is rolled back and the batch goes through a
        temporary table and INSERT ... SELECT ... ON CONFLICT DO NOTHING instead.
        Memories may come pre-encoded (encode()), so that encoding can run while another batch loads.
        """
        batch = memories if isinstance(memories, EncodedBatch) else encode(memories)
        if not batch.rows:
            return 0
        try:
            with self.session.begin_nested():
                self._copy(f"memories ({_COLUMNS})", batch.payload)
            return batch.rows
        except psycopg2.errors.UniqueViolation:
            pass  # some rows are stored already: take the conflict-skipping path
        self.session.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS memagent_import_stage ("
                " namespace text, session_id text, content text, embedding vector, embedding_model text,"
                " content_hash text, metadata jsonb, created_at timestamptz) ON COMMIT DELETE ROWS"
            )
        )
        self._copy("memagent_import_stage", batch.payload)
        result = self.session.execute(
            text(
                f"INSERT INTO memories ({_COLUMNS}) SELECT {_COLUMNS} FROM memagent_import_stage"
                " ON CONFLICT ON CONSTRAINT uq_memories_namespace_content_hash DO NOTHING"
            )
        )
        self.session.execute(text("TRUNCATE memagent_import_stage"))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _copy(self, target: str, payload: bytes) -> None:
        raw = self.session.connection().connection.dbapi_connection
        assert raw is not None
        cursor: Any = raw.cursor()
        try:
            cursor.copy_expert(
                f"COPY {target} FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload), size=1 << 20
            )
        finally:
            cursor.close()

    def iter_all(self, scope: Scope | None, *, with_embeddings: bool, batch: int = 1000) -> Iterator[Any]:
        """Every memory in scope (or in every namespace), oldest first, streamed from a server-side cursor."""
        columns = [*RECORD_COLUMNS, MemoryRow.embedding] if with_embeddings else list(RECORD_COLUMNS)
        stmt = select(*columns).order_by(MemoryRow.id)
        if scope is not None:
            stmt = stmt.where(scope.where())
        result = self.session.execute(stmt.execution_options(yield_per=batch))
        yield from result
