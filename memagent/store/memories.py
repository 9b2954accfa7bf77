"""MemoryRepository: every query on the memories table outside bulk work. Takes a Session, never commits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from memagent.errors import InputError
from memagent.records import MemoryRecord
from memagent.store.models import MemoryRow
from memagent.store.scope import RECORD_COLUMNS, Scope, to_record
from memagent.store.search import SearchQueries
from memagent.store.vector_format import vector_text

# A memory's importance unless said otherwise (the column's default, revision 0013).
DEFAULT_IMPORTANCE = 0.5

# Link facts or summaries to the memories they came from: only memories of the namespace, and only those
# this transaction can see (row-level security); a link already there is left as it is.
LINK_SOURCES = """
INSERT INTO memory_sources (memory_id, source_id, namespace)
SELECT l.memory_id, m.id, m.namespace
FROM unnest(CAST(:memory_ids AS bigint[]), CAST(:source_ids AS bigint[])) AS l(memory_id, source_id)
JOIN memories m ON m.id = l.source_id AND m.namespace = :namespace
ON CONFLICT DO NOTHING"""


def content_hash(content: str) -> str:
    """The key that makes identical content in a namespace a single memory."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewMemory:
    """A memory ready to be stored (embedding None: pending)."""

    namespace: str
    session_id: str
    content: str
    embedding: Any
    embedding_model: str
    metadata: dict[str, Any]
    created_at: datetime | None = None
    kind: str = "exchange"
    importance: float = DEFAULT_IMPORTANCE


_INSERT_SKIPPING = (
    insert(MemoryRow)
    .on_conflict_do_nothing(constraint="uq_memories_namespace_content_hash")
    .returning(MemoryRow.id, MemoryRow.namespace, MemoryRow.content_hash)
)


# Store one memory in one statement, guarded by the embedding space: nothing is written unless the database
# holds this model and dimension. Returns (id, created): the new row, or the one already holding this content
# in the namespace; no row at all when the space differs (or was never claimed), or when an identical memory
# committed after the statement's snapshot was taken (a race): the caller then takes the full path.
# Deferred, the memory is not in the HNSW graph yet (indexed false, unless it has no vector): an indexing step
# puts it there after the store (memagent.store.deferred), and recall finds it meanwhile.
# It goes prepared (memagent.store.prepared: every parameter typed by a CAST): parsing and planning it took
# 0.36 of its 1.6 ms p50 in the server (a chat turn's store at 1536 dimensions, both forms in turn).
_ADD_ONE_GUARDED = """
WITH space AS (
    SELECT 1 FROM embedding_space
    WHERE model = CAST(:space_model AS text) AND dimension = CAST(:space_dim AS integer)
      AND index_kind = CAST(:space_index AS text)
),
added AS (
    INSERT INTO memories (namespace, session_id, content, embedding, embedding_model, content_hash, metadata,
                          created_at, indexed)
    SELECT CAST(:namespace AS text), CAST(:session_id AS text), CAST(:content AS text),
           CAST(:embedding AS vector), CAST(:embedding_model AS text), CAST(:content_hash AS text),
           CAST(:metadata AS jsonb), CAST(:created_at AS timestamptz), CAST(:indexed AS boolean)
    WHERE EXISTS (SELECT 1 FROM space)
    ON CONFLICT ON CONSTRAINT uq_memories_namespace_content_hash DO NOTHING
    RETURNING id
)
SELECT id, true FROM added
UNION ALL
SELECT m.id, false FROM memories m
WHERE EXISTS (SELECT 1 FROM space) AND NOT EXISTS (SELECT 1 FROM added)
  AND m.namespace = :namespace AND m.content_hash = :content_hash"""


def add_one_guarded(
    memory: NewMemory, dimension: int, index: str, *, defer: bool = False
) -> tuple[str, dict[str, Any]]:
    """The statement that stores one memory if the database holds its model at `dimension` with an index of
    kind `index` (text() SQL, parameters): its one row is (id, created); no row means: take the full path
    (see _ADD_ONE_GUARDED). defer: leave the memory out of the HNSW graph until an indexing step
    (memagent.store.deferred), which the caller decided knowing the index's kind: a kind changed since
    (`memagent index --kind`) sends the store down the full path, which learns the new one."""
    return _ADD_ONE_GUARDED, {
        "space_model": memory.embedding_model,
        "space_dim": dimension,
        "space_index": index,
        "namespace": memory.namespace,
        "session_id": memory.session_id,
        "content": memory.content,
        "embedding": None if memory.embedding is None else vector_text(memory.embedding),
        "embedding_model": memory.embedding_model,
        "content_hash": content_hash(memory.content),
        "metadata": json.dumps(memory.metadata, ensure_ascii=False),
        "created_at": memory.created_at or datetime.now(UTC),
        # (a pending memory joins the graph when it is embedded)
        "indexed": memory.embedding is None or not defer,
    }


class MemoryRepository(SearchQueries):
    """Reads and writes memories in the caller's session and transaction (recall's: SearchQueries)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- writes ---------------------------------------------------------------------------------------------

    def add(self, memory: NewMemory) -> tuple[int, bool]:
        """Store one memory; identical content in the namespace is kept once. Returns (id, created)."""
        return self.add_many([memory])[0]

    def add_many(self, memories: Sequence[NewMemory], *, chunk: int = 500) -> list[tuple[int, bool]]:
        """Store memories with one multi-row INSERT per chunk; identical content in a namespace is kept once.

        Returns (id, created) per memory, in order; a memory identical to one stored before (or earlier in
        the same batch) gets the existing id and created=False.
        """
        results: list[tuple[int, bool]] = []
        now = datetime.now(UTC)
        for start in range(0, len(memories), chunk):
            part = memories[start : start + chunk]
            rows = [
                {
                    "namespace": m.namespace,
                    "session_id": m.session_id,
                    "content": m.content,
                    "embedding": m.embedding,
                    "embedding_model": m.embedding_model,
                    "content_hash": content_hash(m.content),
                    "metadata_": m.metadata,
                    "created_at": m.created_at or now,
                    "kind": m.kind,
                    "importance": m.importance,
                }
                for m in part
            ]
            # One statement for every call (compiled once, cached), executed with the rows as parameters:
            # SQLAlchemy sends them as one multi-row INSERT ("insertmanyvalues").
            inserted = {
                (r.namespace, r.content_hash): int(r.id) for r in self.session.execute(_INSERT_SKIPPING, rows)
            }
            missing = {(r["namespace"], r["content_hash"]) for r in rows} - inserted.keys()
            existing: dict[tuple[str, str], int] = {}
            for namespace in {ns for ns, _ in missing}:
                hashes = [h for ns, h in missing if ns == namespace]
                found = self.session.execute(
                    select(MemoryRow.id, MemoryRow.content_hash).where(
                        MemoryRow.namespace == namespace, MemoryRow.content_hash.in_(hashes)
                    )
                )
                existing |= {(namespace, r.content_hash): int(r.id) for r in found}
            seen: set[tuple[str, str]] = set()
            for row in rows:
                key = (row["namespace"], row["content_hash"])
                created = key in inserted and key not in seen
                seen.add(key)
                results.append((inserted[key] if key in inserted else existing[key], created))
        return results

    def link(self, namespace: str, links: Sequence[tuple[int, Sequence[int]]]) -> None:
        """Record that each memory came from its source memories (all of `namespace`; InputError names
        the first source that is not a memory there, and the caller's transaction then writes nothing)."""
        pairs = [(memory_id, int(source)) for memory_id, sources in links for source in sources]
        if not pairs:
            return
        own = next((memory_id for memory_id, source in pairs if memory_id == source), None)
        if own is not None:  # a text identical to its own source: it was not stored anew
            raise InputError(f"memory {own} cannot be its own source (the text is the same).")
        wanted = {source for _, source in pairs}
        found = set(
            self.session.scalars(
                select(MemoryRow.id).where(MemoryRow.id.in_(wanted), MemoryRow.namespace == namespace)
            )
        )
        missing = sorted(wanted - found)
        if missing:
            raise InputError(f"source {missing[0]} is not a memory of namespace {namespace!r}.")
        self.session.execute(
            text(LINK_SOURCES),
            {
                "memory_ids": [memory_id for memory_id, _ in pairs],
                "source_ids": [source for _, source in pairs],
                "namespace": namespace,
            },
        )

    def kinds_of(self, ids: Sequence[int]) -> dict[int, str]:
        """The kind of each of these memories (those this transaction can see); `expired` or `archived`
        instead for one that memagent no longer believes or has compressed away."""
        rows = self.session.execute(
            select(MemoryRow.id, MemoryRow.kind, MemoryRow.expired_at, MemoryRow.archived_at).where(
                MemoryRow.id.in_(ids)
            )
        )
        return {
            int(row.id): "expired"
            if row.expired_at is not None
            else "archived"
            if row.archived_at is not None
            else str(row.kind)
            for row in rows
        }

    def purge(self, scope: Scope) -> int:
        """Delete the memories in scope; returns how many."""
        result = self.session.execute(delete(MemoryRow).where(scope.where()))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def delete_one(self, namespace: str, memory_id: int) -> MemoryRecord | None:
        """Delete one memory of the namespace by id; returns it, or None when the namespace has no such id.

        The namespace filter stands beside row-level security, so the answer is the same with isolation off.
        """
        stmt = (
            delete(MemoryRow)
            .where(MemoryRow.id == memory_id, MemoryRow.namespace == namespace)
            .returning(*RECORD_COLUMNS)
        )
        row = self.session.execute(stmt).first()
        return None if row is None else to_record(row)

    # -- reads -----------------------------------------------------------------------------------------------

    def recent(self, scope: Scope, *, limit: int) -> list[MemoryRecord]:
        """The newest memories in scope, newest first."""
        stmt = (
            select(*RECORD_COLUMNS)
            .where(scope.where())
            .order_by(MemoryRow.created_at.desc(), MemoryRow.id.desc())
            .limit(limit)
        )
        return [to_record(row) for row in self.session.execute(stmt).all()]

    def count(self, scope: Scope | None) -> int:
        """How many memories are in scope (None: every memory this unit of work can see)."""
        stmt = select(func.count()).select_from(MemoryRow)
        if scope is not None:
            stmt = stmt.where(scope.where())
        return int(self.session.execute(stmt).scalar_one())

    # -- pending embeddings ------------------------------------------------------------------------------

    def pending_count(self, namespace: str | None = None) -> int:
        """How many memories wait for their embedding (in one namespace, or in all)."""
        stmt = select(func.count()).select_from(MemoryRow).where(MemoryRow.embedding.is_(None))
        if namespace is not None:
            stmt = stmt.where(MemoryRow.namespace == namespace)
        return int(self.session.execute(stmt).scalar_one())

    def pending_batch(self, limit: int) -> list[tuple[int, str]]:
        """Up to `limit` memories waiting for their embedding, oldest first: (id, content)."""
        rows = self.session.execute(
            select(MemoryRow.id, MemoryRow.content)
            .where(MemoryRow.embedding.is_(None))
            .order_by(MemoryRow.id)
            .limit(limit)
        )
        return [(int(row.id), str(row.content)) for row in rows]

    def set_embeddings(self, vectors: Sequence[tuple[int, Any]], model: str) -> int:
        """Fill in pending embeddings; a memory embedded meanwhile (another backfill) is left alone."""
        done = 0
        for memory_id, vector in vectors:
            result = self.session.execute(
                update(MemoryRow)
                .where(MemoryRow.id == memory_id, MemoryRow.embedding.is_(None))
                .values(embedding=vector, embedding_model=model)
            )
            done += int(result.rowcount)  # type: ignore[attr-defined]
        return done
