"""The HNSW index on memories.embedding: its two kinds, how recall addresses them, and (re)building it.

- vector: the index on the column itself (revision 0001): full-precision graph.
- halfvec: an expression index on `embedding::halfvec(dim)`: half the size, so twice as much of the graph
  stays in memory. It pays when the index outgrows the buffer cache (100k x 1536 with 128 MB: store p95
  8.1 vs 12.6 ms); when the index fits it gains nothing (docs/benchmarks.md). Queries must use the same
  expression for the planner to pick it.

The kind is read from the index definition itself, so a database never disagrees with its own index. With no
index (a bulk import dropped it and is still loading, or was killed), recall scans exactly: slower, correct.
"""

from __future__ import annotations

import os
from typing import Literal

import psutil
from sqlalchemy import text
from sqlalchemy.orm import Session

from memagent.models import HNSW_EF_CONSTRUCTION, HNSW_M

IndexKind = Literal["vector", "halfvec"]
INDEX_NAME = "ix_memories_embedding_hnsw"
# Advisory lock held while the index is dropped for a bulk load, repaired or rebuilt (not migrations' key).
INDEX_LOCK_KEY = 0x6D656D6167656E74 ^ 0x696E_6478  # "memagent" ^ "indx"


def kind(session: Session) -> IndexKind | None:
    """The kind of the HNSW index in place, or None when there is none."""
    definition = session.execute(
        text("SELECT indexdef FROM pg_indexes WHERE tablename = 'memories' AND indexname = :name"),
        {"name": INDEX_NAME},
    ).scalar_one_or_none()
    if definition is None:
        return None
    return "halfvec" if "halfvec" in definition else "vector"


def key_expression(index: IndexKind | None, dim: int, column: str = "embedding") -> str:
    """The SQL expression the index is built on (what ORDER BY ... <=> must use to be served by it)."""
    return f"({column})::halfvec({dim})" if index == "halfvec" else column


def query_expression(index: IndexKind | None, dim: int, param: str = ":qvec") -> str:
    """The query vector, cast to match key_expression."""
    return f"CAST({param} AS halfvec({dim}))" if index == "halfvec" else f"CAST({param} AS vector)"


def build_memory_mb() -> int:
    """maintenance_work_mem for an index build: the graph should fit (64 MB builds 4x slower at 100k x 1536),
    but never more than a quarter of this machine's memory."""
    total = psutil.virtual_memory().total // 2**20
    return int(max(64, min(2048, total // 4)))


def build_workers() -> int:
    """Parallel workers for an index build besides the leader: every other core, at most 7."""
    return max(0, min(7, (os.cpu_count() or 1) - 1))


def drop(session: Session) -> None:
    """Drop the HNSW index (before a bulk load into a table the load will dwarf)."""
    session.execute(text(f"DROP INDEX IF EXISTS {INDEX_NAME}"))


def create(session: Session, index: IndexKind, dim: int) -> None:
    """Build the HNSW index of the given kind, with memory and parallel workers sized for the build.

    The planner sizes parallel index builds by the table's main heap; 1536-dimension vectors live in the
    TOAST table, so without an explicit parallel_workers on the table it plans no workers at all.
    """
    workers = build_workers()
    opclass = "halfvec_cosine_ops" if index == "halfvec" else "vector_cosine_ops"
    session.execute(text(f"SET LOCAL maintenance_work_mem = '{build_memory_mb()}MB'"))
    session.execute(text(f"SET LOCAL max_parallel_maintenance_workers = {workers}"))
    session.execute(text(f"ALTER TABLE memories SET (parallel_workers = {max(workers, 1)})"))
    session.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON memories USING hnsw "
            f"(({key_expression(index, dim)}) {opclass}) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
        )
    )
    session.execute(text("ALTER TABLE memories RESET (parallel_workers)"))


def try_lock(session: Session) -> bool:
    """Take the index-maintenance lock for this transaction, if nobody holds it.

    A bulk load holds it for its whole run (its index is dropped on purpose meanwhile); a repair or a rebuild
    holds it while it builds. A killed holder's connection closes and the lock goes with it.
    """
    return bool(
        session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": INDEX_LOCK_KEY}).scalar_one()
    )
