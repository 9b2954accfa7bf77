"""The embedding space the database holds: its model, its dimension and the kind of its vector index."""

from __future__ import annotations

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from memagent.store.hnsw import IndexKind
from memagent.store.models import EmbeddingSpace


class SpaceRepository:
    """The one-row embedding_space table and the vector column's dimension (never commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self) -> tuple[str, int] | None:
        """The (model, dimension) the database holds, or None before the first write."""
        row = self.session.execute(select(EmbeddingSpace.model, EmbeddingSpace.dimension)).first()
        return (row.model, int(row.dimension)) if row else None

    def claim(self, model: str, dimension: int) -> tuple[str, int]:
        """Record the space at first write (first writer wins); returns the space now in force."""
        self.session.execute(
            insert(EmbeddingSpace)
            .values(id=1, model=model, dimension=dimension)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        space = self.get()
        assert space is not None
        return space

    def replace(self, model: str, dimension: int, index_kind: IndexKind) -> None:
        """Record another space (after a re-embedding), keeping the index kind."""
        self.session.execute(delete(EmbeddingSpace))
        self.claim(model, dimension)
        self.set_index_kind(index_kind)

    def index_kind(self) -> IndexKind:
        """Which HNSW index serves recall (vector until someone chooses halfvec)."""
        kind = self.session.execute(select(EmbeddingSpace.index_kind)).scalar_one_or_none()
        return "halfvec" if kind == "halfvec" else "vector"

    def set_index_kind(self, kind: IndexKind) -> None:
        """Record the kind of HNSW index recall is served by."""
        self.session.execute(update(EmbeddingSpace).values(index_kind=kind))

    def column_dimension(self) -> int | None:
        """The dimension of the memories.embedding column as the schema has it."""
        value = self.session.execute(
            text(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
            )
        ).scalar_one_or_none()
        return int(value) if value is not None and value > 0 else None
