"""Moving a database to another embedding model or dimension (`memagent reembed`).

New vectors are computed in batches into `embedding_staging` (one commit per batch, so a killed run resumes
where it stopped) while recall keeps using the old ones. The switch-over is one transaction: it blocks
writes, stages whatever arrived meanwhile, retypes the vector column, moves the new vectors in, rebuilds the
HNSW index and records the new model. This is the one place memagent changes the schema outside Alembic:
the vector dimension is data-dependent, so the retyping is done here, to the index definition of revision
0001.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from memagent import vector_index
from memagent.config import MAX_INDEXED_DIM
from memagent.embeddings import Embedder
from memagent.errors import InputError
from memagent.models import EmbeddingSpace
from memagent.repository import MemoryRepository
from memagent.service import MemoryService

_PENDING = """
SELECT m.id, m.content FROM memories m
LEFT JOIN embedding_staging s ON s.memory_id = m.id AND s.model = :model
WHERE s.memory_id IS NULL
ORDER BY m.id
LIMIT :batch
"""


class Reembedder:
    """Re-embeds every memory with `target` and switches the database over to it."""

    def __init__(self, memory: MemoryService, target: Embedder, *, batch: int = 256) -> None:
        if target.dim > MAX_INDEXED_DIM:
            raise InputError(
                f"{target.model} makes {target.dim}-dimension vectors; pgvector's HNSW index takes at most "
                f"{MAX_INDEXED_DIM}.",
                hint="Choose a smaller --dim (text-embedding-3 models can shorten their vectors).",
            )
        self.memory = memory
        self.target = target
        self.batch = batch

    def current(self) -> tuple[str, int] | None:
        """The (model, dimension) the database holds now."""
        with self.memory.unit() as repo:
            return repo.embedding_space()

    def pending(self) -> int:
        """How many memories still need a vector from the target model."""
        with self.memory.unit("*") as repo:
            return int(
                repo.session.execute(
                    text(
                        "SELECT count(*) FROM memories m LEFT JOIN embedding_staging s"
                        " ON s.memory_id = m.id AND s.model = :model WHERE s.memory_id IS NULL"
                    ),
                    {"model": self.target.model},
                ).scalar_one()
            )

    def _stage(self, session: Session) -> int:
        rows = session.execute(text(_PENDING), {"model": self.target.model, "batch": self.batch}).all()
        if not rows:
            return 0
        vectors = self.target.embed([row.content for row in rows])
        session.execute(
            text(
                "INSERT INTO embedding_staging (memory_id, model, embedding)"
                " VALUES (:id, :model, CAST(:embedding AS vector))"
                " ON CONFLICT (memory_id) DO UPDATE"
                " SET model = excluded.model, embedding = excluded.embedding"
            ),
            [
                {"id": row.id, "model": self.target.model, "embedding": _vector_text(vector)}
                for row, vector in zip(rows, vectors.tolist(), strict=True)
            ],
        )
        return len(rows)

    def stage_batch(self) -> int:
        """Embed and stage the next batch in its own transaction; returns how many (0: all staged)."""
        with self.memory.unit("*") as repo:
            return self._stage(repo.session)

    def switch(self) -> int:
        """Finish staging under a write lock and switch to the target model; returns the memory count."""
        dim = self.target.dim
        with self.memory.unit(admin=True) as repo:  # retypes the column: the table owner's work
            session = repo.session
            # Readers go on; writers wait until the switch commits.
            session.execute(text("LOCK TABLE memories IN SHARE ROW EXCLUSIVE MODE"))
            while self._stage(session):
                pass
            kind = repo.index_kind()
            statements = [
                f"DROP INDEX IF EXISTS {vector_index.INDEX_NAME}",
                "ALTER TABLE memories ALTER COLUMN embedding DROP NOT NULL",
                f"ALTER TABLE memories ALTER COLUMN embedding TYPE vector({dim}) USING NULL::vector({dim})",
                "UPDATE memories m SET embedding = s.embedding, embedding_model = s.model"
                " FROM embedding_staging s WHERE s.memory_id = m.id",
                "ALTER TABLE memories ALTER COLUMN embedding SET NOT NULL",
            ]
            for statement in statements:
                session.execute(text(statement))
            vector_index.create(session, kind, dim)
            session.execute(text("DELETE FROM embedding_staging"))
            session.execute(text("DELETE FROM embedding_space"))
            MemoryRepository(session).claim_embedding_space(self.target.model, dim)
            session.execute(update(EmbeddingSpace).values(index_kind=kind))
            return int(session.execute(text("SELECT count(*) FROM memories")).scalar_one())

    def run(self, on_progress: Callable[[int], None] | None = None) -> int:
        """Stage everything in batches (resumable), then switch; returns how many memories moved."""
        while staged := self.stage_batch():
            if on_progress is not None:
                on_progress(staged)
        return self.switch()


def _vector_text(values: list[float]) -> str:
    return "[" + ",".join(f"{x:.9g}" for x in values) + "]"
