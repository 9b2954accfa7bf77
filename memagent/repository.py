"""MemoryRepository: every query on the memories table. Takes a Session, never commits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import ColumnElement, Select, and_, bindparam, cast, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from memagent import hybrid
from memagent.models import EmbeddingSpace, Float32Vector, Memory, vector_text
from memagent.records import MemoryRecord, RecalledMemory
from memagent.vector_index import IndexKind

SearchMode = Literal["vector", "text", "hybrid"]


def content_hash(content: str) -> str:
    """The key that makes identical content in a namespace a single memory."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewMemory:
    """A memory ready to be stored (already embedded)."""

    namespace: str
    session_id: str
    content: str
    embedding: Any
    embedding_model: str
    metadata: dict[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True)
class Scope:
    """Which memories a read or purge covers: one namespace, optionally one session and a date bound."""

    namespace: str
    session_id: str | None = None
    before: datetime | None = None

    def sql(self) -> tuple[str, dict[str, Any]]:
        """The scope as a SQL condition on alias `m`, with its bind parameters (values are never inlined)."""
        clauses = ["m.namespace = :scope_namespace"]
        params: dict[str, Any] = {"scope_namespace": self.namespace}
        if self.session_id is not None:
            clauses.append("m.session_id = :scope_session")
            params["scope_session"] = self.session_id
        if self.before is not None:
            clauses.append("m.created_at < :scope_before")
            params["scope_before"] = self.before
        return " AND ".join(clauses), params

    def where(self) -> ColumnElement[bool]:
        clauses = [Memory.namespace == self.namespace]
        if self.session_id is not None:
            clauses.append(Memory.session_id == self.session_id)
        if self.before is not None:
            clauses.append(Memory.created_at < self.before)
        return and_(*clauses)


_INSERT_SKIPPING = (
    insert(Memory)
    .on_conflict_do_nothing(constraint="uq_memories_namespace_content_hash")
    .returning(Memory.id, Memory.namespace, Memory.content_hash)
)

RECORD_COLUMNS = (
    Memory.id,
    Memory.namespace,
    Memory.session_id,
    Memory.content,
    Memory.created_at,
    Memory.embedding_model,
    Memory.metadata_.label("metadata"),
)


def _by_recency(found: list[RecalledMemory], half_life: timedelta, mode: SearchMode) -> list[RecalledMemory]:
    now = datetime.now(UTC)
    seconds = half_life.total_seconds()

    def weighted(memory: RecalledMemory) -> float:
        base = (1.0 + memory.score) / 2 if mode == "vector" else memory.score
        age = max((now - memory.created_at).total_seconds(), 0.0)
        return float(base * 0.5 ** (age / seconds))

    rescored = [replace(memory, score=weighted(memory)) for memory in found]
    return sorted(rescored, key=lambda memory: (-memory.score, memory.id))


def _recalled(row: Any, *, score: float) -> RecalledMemory:
    distance = None if row.distance is None else float(row.distance)
    return RecalledMemory(**_record(row).__dict__, distance=distance, score=score)


def _record(row: Any) -> MemoryRecord:
    return MemoryRecord(
        id=row.id,
        namespace=row.namespace,
        session_id=row.session_id,
        content=row.content,
        created_at=row.created_at,
        embedding_model=row.embedding_model,
        metadata=dict(row.metadata or {}),
    )


class MemoryRepository:
    """Reads and writes memories in the caller's session and transaction."""

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
                    select(Memory.id, Memory.content_hash).where(
                        Memory.namespace == namespace, Memory.content_hash.in_(hashes)
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

    def purge(self, scope: Scope) -> int:
        """Delete the memories in scope; returns how many."""
        result = self.session.execute(delete(Memory).where(scope.where()))
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- reads -----------------------------------------------------------------------------------------------

    def search(
        self,
        query_embedding: Sequence[float] | Any,
        *,
        scope: Scope,
        k: int,
        max_distance: float | None = None,
        ef_search: int = 100,
        mode: SearchMode = "vector",
        query_text: str | None = None,
        depth: int = 50,
        text_weight: float = 1.0,
        recency_half_life: timedelta | None = None,
        index: IndexKind | None = "vector",
    ) -> list[RecalledMemory]:
        """The k best memories in scope, best first.

        vector: nearest by cosine distance. The inner query is exactly `ORDER BY embedding <=> :q LIMIT k`,
        the shape the HNSW index serves. Scope filters apply after the index scan, so iterative scanning is
        switched on for this transaction: the scan keeps going until k rows pass the filter.
        text: BM25 over the full-text index. hybrid: both, fused by reciprocal rank (memagent.hybrid), each
        side ranking `depth` candidates.
        With a recency half-life, the `depth` best are re-ranked by score * 0.5^(age / half-life) (vector
        scores mapped to 0-1 first) and the k best kept.
        In every mode max_distance drops memories farther than that cosine distance from the query; it is
        applied outside the index query, where it cannot make the iterative scan walk its whole budget.
        index: the kind of HNSW index in place (memagent.vector_index); the vector ranking orders by the
        expression it is built on, and reports full-precision distances either way.
        """
        depth = max(depth, k)
        fetch = depth if recency_half_life is not None else k
        self.session.execute(
            text(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
                " set_config('hnsw.ef_search', :ef, true)"
            ),
            {"ef": str(max(ef_search, depth if mode == "hybrid" else fetch))},
        )
        if mode == "vector":
            found = self._vector_search(query_embedding, scope, fetch, max_distance, index)
        elif query_text is None:
            raise ValueError(f"{mode} search needs the query text")
        else:
            found = self._ranked_search(
                query_embedding, query_text, scope, fetch, max_distance, mode, depth, text_weight, index
            )
        if recency_half_life is not None:
            found = _by_recency(found, recency_half_life, mode)[:k]
        return found

    def _vector_search(
        self,
        query_embedding: Sequence[float] | Any,
        scope: Scope,
        k: int,
        max_distance: float | None,
        index: IndexKind | None,
    ) -> list[RecalledMemory]:
        # One parameter, sent once, for both the reported distance and the index's ordering key.
        query = bindparam("query", query_embedding, type_=Float32Vector())
        distance = Memory.embedding.cosine_distance(query).label("distance")
        if index == "halfvec":
            dim = len(query_embedding)
            key = cast(Memory.embedding, HALFVEC(dim)).cosine_distance(cast(query, HALFVEC(dim)))
        else:
            key = distance
        inner = (
            select(*RECORD_COLUMNS, distance)
            .where(scope.where(), Memory.embedding.is_not(None))
            .order_by(key)
            .limit(k)
            .subquery()
        )
        stmt: Select[Any] = select(inner)
        if max_distance is not None:
            stmt = stmt.where(inner.c.distance <= max_distance)
        # relaxed_order may return rows slightly out of order: sort the k rows exactly.
        stmt = stmt.order_by(inner.c.distance, inner.c.id)
        rows = self.session.execute(stmt).all()
        return [_recalled(row, score=1.0 - float(row.distance)) for row in rows]

    def _ranked_search(
        self,
        query_embedding: Sequence[float] | Any,
        query_text: str,
        scope: Scope,
        k: int,
        max_distance: float | None,
        mode: SearchMode,
        depth: int,
        text_weight: float,
        index: IndexKind | None,
    ) -> list[RecalledMemory]:
        condition, params = scope.sql()
        if mode == "hybrid":
            sql = hybrid.hybrid_sql(
                condition, max_distance=max_distance is not None, index=index, dim=len(query_embedding)
            )
        else:
            sql = hybrid.text_sql(condition, max_distance=max_distance is not None)
        params |= hybrid.fusion_params(w_text=text_weight) | {
            "qtext": query_text,
            "qvec": None if query_embedding is None else vector_text(query_embedding),
            "k": k,
            "depth": depth,
            "max_distance": max_distance,
        }
        rows = self.session.execute(text(sql), params).all()
        return [_recalled(row, score=float(row.score)) for row in rows]

    def recent(self, scope: Scope, *, limit: int) -> list[MemoryRecord]:
        """The newest memories in scope, newest first."""
        stmt = (
            select(*RECORD_COLUMNS)
            .where(scope.where())
            .order_by(Memory.created_at.desc(), Memory.id.desc())
            .limit(limit)
        )
        return [_record(row) for row in self.session.execute(stmt).all()]

    def count(self, scope: Scope) -> int:
        """How many memories are in scope."""
        return int(
            self.session.execute(select(func.count()).select_from(Memory).where(scope.where())).scalar_one()
        )

    # -- pending embeddings ------------------------------------------------------------------------------

    def pending_count(self, namespace: str | None = None) -> int:
        """How many memories wait for their embedding (in one namespace, or in all)."""
        stmt = select(func.count()).select_from(Memory).where(Memory.embedding.is_(None))
        if namespace is not None:
            stmt = stmt.where(Memory.namespace == namespace)
        return int(self.session.execute(stmt).scalar_one())

    def pending_batch(self, limit: int) -> list[tuple[int, str]]:
        """Up to `limit` memories waiting for their embedding, oldest first: (id, content)."""
        rows = self.session.execute(
            select(Memory.id, Memory.content)
            .where(Memory.embedding.is_(None))
            .order_by(Memory.id)
            .limit(limit)
        )
        return [(int(row.id), str(row.content)) for row in rows]

    def set_embeddings(self, vectors: Sequence[tuple[int, Any]], model: str) -> int:
        """Fill in pending embeddings; a memory embedded meanwhile (another backfill) is left alone."""
        done = 0
        for memory_id, vector in vectors:
            result = self.session.execute(
                update(Memory)
                .where(Memory.id == memory_id, Memory.embedding.is_(None))
                .values(embedding=vector, embedding_model=model)
            )
            done += int(result.rowcount)  # type: ignore[attr-defined]
        return done

    # -- embedding space -----------------------------------------------------------------------------------

    def index_kind(self) -> IndexKind:
        """Which HNSW index serves recall (vector until someone chooses halfvec)."""
        kind = self.session.execute(select(EmbeddingSpace.index_kind)).scalar_one_or_none()
        return "halfvec" if kind == "halfvec" else "vector"

    def embedding_space(self) -> tuple[str, int] | None:
        """The (model, dimension) the database holds, or None before the first write."""
        row = self.session.execute(select(EmbeddingSpace.model, EmbeddingSpace.dimension)).first()
        return (row.model, int(row.dimension)) if row else None

    def claim_embedding_space(self, model: str, dimension: int) -> tuple[str, int]:
        """Record the space at first write (first writer wins); returns the space now in force."""
        self.session.execute(
            insert(EmbeddingSpace)
            .values(id=1, model=model, dimension=dimension)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        space = self.embedding_space()
        assert space is not None
        return space

    def column_dimension(self) -> int | None:
        """The dimension of the memories.embedding column as the migration created it."""
        value = self.session.execute(
            text(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
            )
        ).scalar_one_or_none()
        return int(value) if value is not None and value > 0 else None
