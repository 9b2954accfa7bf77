"""Recall's queries: the vector ranking (the shape the HNSW index serves), BM25 text and hybrid fusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, bindparam, select, text
from sqlalchemy.orm import Session

from memagent.records import RecalledMemory
from memagent.store import hnsw, search_sql
from memagent.store.hnsw import IndexKind
from memagent.store.models import Float32Vector, MemoryRow, vector_text
from memagent.store.scope import RECORD_COLUMNS, Scope, to_recalled

SearchMode = Literal["vector", "text", "hybrid"]


class SearchQueries:
    """Recall's queries over a session (MemoryRepository has them); never commits."""

    session: Session

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
        text: BM25 over the full-text index. hybrid: both, fused by reciprocal rank
        (memagent.store.search_sql), each side ranking `depth` candidates.
        With a recency half-life, the `depth` best are re-ranked by score * 0.5^(age / half-life) (vector
        scores mapped to 0-1 first) and the k best kept.
        In every mode max_distance drops memories farther than that cosine distance from the query; it is
        applied outside the index query, where it cannot make the iterative scan walk its whole budget.
        index: the kind of HNSW index in place (memagent.store.hnsw); the vector ranking orders by the
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
            found = _vector(self.session, query_embedding, scope, fetch, max_distance, index)
        elif query_text is None:
            raise ValueError(f"{mode} search needs the query text")
        else:
            found = _ranked(
                self.session,
                query_embedding,
                query_text,
                scope,
                fetch,
                max_distance,
                mode,
                depth,
                text_weight,
                index,
            )
        if recency_half_life is not None:
            found = _by_recency(found, recency_half_life, mode)[:k]
        return found


def _vector(
    session: Session,
    query_embedding: Sequence[float] | Any,
    scope: Scope,
    k: int,
    max_distance: float | None,
    index: IndexKind | None,
) -> list[RecalledMemory]:
    # One parameter, sent once, for both the reported distance and the index's ordering key.
    query = bindparam("query", query_embedding, type_=Float32Vector())
    distance = MemoryRow.embedding.cosine_distance(query).label("distance")
    key = (
        distance
        if index != "halfvec"
        else hnsw.order_key(MemoryRow.embedding, query, index, len(query_embedding))
    )
    inner = (
        select(*RECORD_COLUMNS, distance)
        .where(scope.where(), MemoryRow.embedding.is_not(None))
        .order_by(key)
        .limit(k)
        .subquery()
    )
    stmt: Select[Any] = select(inner)
    if max_distance is not None:
        stmt = stmt.where(inner.c.distance <= max_distance)
    # relaxed_order may return rows slightly out of order: sort the k rows exactly.
    stmt = stmt.order_by(inner.c.distance, inner.c.id)
    rows = session.execute(stmt).all()
    return [to_recalled(row, score=1.0 - float(row.distance)) for row in rows]


def _ranked(
    session: Session,
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
        sql = search_sql.hybrid_sql(
            condition, max_distance=max_distance is not None, index=index, dim=len(query_embedding)
        )
    else:
        sql = search_sql.text_sql(condition, max_distance=max_distance is not None)
    params |= search_sql.text_params(scope.namespace, scope.session_id, scope.before)
    params |= search_sql.fusion_params(w_text=text_weight) | {
        "qtext": query_text,
        "qvec": None if query_embedding is None else vector_text(query_embedding),
        "k": k,
        "depth": depth,
        "max_distance": max_distance,
    }
    rows = session.execute(text(sql), params).all()
    return [to_recalled(row, score=float(row.score)) for row in rows]


def _by_recency(found: list[RecalledMemory], half_life: timedelta, mode: SearchMode) -> list[RecalledMemory]:
    now = datetime.now(UTC)
    seconds = half_life.total_seconds()

    def weighted(memory: RecalledMemory) -> float:
        base = (1.0 + memory.score) / 2 if mode == "vector" else memory.score
        age = max((now - memory.created_at).total_seconds(), 0.0)
        return float(base * 0.5 ** (age / seconds))

    rescored = [replace(memory, score=weighted(memory)) for memory in found]
    return sorted(rescored, key=lambda memory: (-memory.score, memory.id))
