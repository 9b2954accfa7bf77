"""The re-embedding's staging table and the vector column's switch-over (`memagent reembed`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from memagent.store.vector_format import vector_text

_UNSTAGED = """
FROM memories m
LEFT JOIN embedding_staging s ON s.memory_id = m.id AND s.model = :model AND s.dimension = :dim
WHERE s.memory_id IS NULL
"""


class StagingRepository:
    """Vectors of the model a re-embedding moves to, and the switch to them (never commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def discard_others(self, model: str, dim: int) -> int:
        """Drop vectors staged for another model or dimension (an earlier, stopped re-embedding)."""
        result = self.session.execute(
            text(
                "DELETE FROM embedding_staging"
                " WHERE model <> :model OR dimension IS NULL OR dimension <> :dim"
            ),
            {"model": model, "dim": dim},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def unstaged_count(self, model: str, dim: int) -> int:
        """How many memories have no staged vector of `model` at `dim` dimensions yet."""
        found = self.session.execute(text("SELECT count(*)" + _UNSTAGED), {"model": model, "dim": dim})
        return int(found.scalar_one())

    def unstaged(self, model: str, dim: int, limit: int) -> list[tuple[int, str]]:
        """Up to `limit` memories with no staged vector of `model` at `dim`, oldest first: (id, content)."""
        rows = self.session.execute(
            text("SELECT m.id, m.content" + _UNSTAGED + "ORDER BY m.id LIMIT :limit"),
            {"model": model, "dim": dim, "limit": limit},
        )
        return [(int(row.id), str(row.content)) for row in rows]

    def stage(self, vectors: Sequence[tuple[int, Any]], model: str, dim: int) -> None:
        """Stage vectors of `model` at `dim` dimensions (replacing a vector staged for another target)."""
        self.session.execute(
            text(
                "INSERT INTO embedding_staging (memory_id, model, dimension, embedding)"
                " VALUES (:id, :model, :dim, CAST(:embedding AS vector))"
                " ON CONFLICT (memory_id) DO UPDATE"
                " SET model = excluded.model, dimension = excluded.dimension, embedding = excluded.embedding"
            ),
            [
                {"id": memory_id, "model": model, "dim": dim, "embedding": vector_text(v)}
                for memory_id, v in vectors
            ],
        )

    def switch(self, dim: int) -> None:
        """Retype the vector column to `dim` and move the staged vectors in; then empty the staging table.

        Only the type changes (the dimension is data-dependent, so this is not a revision); nullability,
        defaults and constraints stay as the revisions made them. The caller drops and rebuilds the index.
        """
        self.session.execute(
            text(f"ALTER TABLE memories ALTER COLUMN embedding TYPE vector({int(dim)}) USING NULL")
        )
        self.session.execute(
            text(
                "UPDATE memories m SET embedding = s.embedding, embedding_model = s.model"
                " FROM embedding_staging s WHERE s.memory_id = m.id"
            )
        )
        self.session.execute(text("DELETE FROM embedding_staging"))
