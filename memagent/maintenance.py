"""Keeping the HNSW index right: choosing its kind, bulk loads without it, and repair after a killed load.

A bulk load into a table it will dwarf is faster without the index: rows go in at COPY speed and the graph
is built once at the end, with memory and parallel workers sized for the build (docs/benchmarks.md: COPY
with the index in place 294 rows/s at 1536 dimensions; without it, then one build, an order of magnitude
faster). While the index is dropped recall still works, by exact scan. If the loader is killed, the next
memagent that opens the database rebuilds the index (the maintenance lock tells a live loader from a dead
one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import func, select, text, update

from memagent import vector_index
from memagent.errors import InputError
from memagent.models import EmbeddingSpace, Memory
from memagent.service import MemoryService
from memagent.vector_index import IndexKind

# Loads smaller than this keep the index in place: a build costs more than inserting into the graph.
BULK_MIN_ROWS = 10_000


@dataclass(frozen=True)
class IndexStatus:
    """The index recall should be served by, and whether it is there."""

    kind: IndexKind
    present: bool
    rows: int
    size_bytes: int


class IndexMaintenance:
    """Index operations over a MemoryService's database."""

    def __init__(self, memory: MemoryService) -> None:
        self.memory = memory

    def status(self) -> IndexStatus:
        with self.memory.unit("*") as repo:
            session = repo.session
            present = vector_index.kind(session) is not None
            size = session.execute(
                text("SELECT coalesce(pg_relation_size(to_regclass(:name)), 0)"),
                {"name": vector_index.INDEX_NAME},
            ).scalar_one()
            rows = session.execute(select(func.count()).select_from(Memory)).scalar_one()
            return IndexStatus(repo.index_kind(), present, int(rows), int(size))

    def rebuild(self, kind: IndexKind) -> None:
        """Build the index of this kind and make it the one recall uses, in one transaction.

        Recall keeps using the old index while the new one builds; writes wait until the switch commits.
        """
        if kind not in ("vector", "halfvec"):
            raise InputError(f"the index kind must be vector or halfvec, not {kind!r}.")
        dim = self.memory.embedder.dim
        with self.memory.unit(admin=True) as repo:
            self.memory.check_embedding_space(repo, claim=True)
            session = repo.session
            if not vector_index.try_lock(session):
                raise InputError("another memagent is loading or rebuilding the index; try again later.")
            session.execute(
                text(f"ALTER INDEX IF EXISTS {vector_index.INDEX_NAME} RENAME TO memagent_old_hnsw")
            )
            vector_index.create(session, kind, dim)
            session.execute(text("DROP INDEX IF EXISTS memagent_old_hnsw"))
            session.execute(update(EmbeddingSpace).values(index_kind=kind))

    def repair(self) -> bool:
        """Rebuild the index if a killed bulk load left the table without it; True if it did."""
        with self.memory.unit(admin=True) as repo:
            session = repo.session
            if repo.embedding_space() is None or vector_index.kind(session) is not None:
                return False
            if not vector_index.try_lock(session):
                return False  # a live bulk load (or another repair) owns the index right now
            vector_index.create(session, repo.index_kind(), self.memory.embedder.dim)
            return True

    @contextmanager
    def bulk_load(
        self,
        load_rows: Callable[[int], int],
        notify: Callable[[str], None] | None = None,
        *,
        min_rows: int = BULK_MIN_ROWS,
    ) -> Iterator[bool]:
        """Load without the index when the load is large and at least the table's size; yields whether.

        `load_rows(enough)` counts the rows the load brings and may stop counting at `enough` (a large file
        need not be read to its end to know it is large enough). The maintenance lock is held, in a
        transaction of its own, for the whole load; the index is dropped in one committed transaction and
        rebuilt in another at the end (also when the load fails).
        """
        if load_rows(min_rows) < min_rows:
            yield False
            return
        with self.memory.unit("*") as repo:
            stored = repo.session.execute(select(func.count()).select_from(Memory)).scalar_one()
        if stored > min_rows and load_rows(stored) < stored:
            yield False
            return
        # The holder's transaction touches nothing but the lock: a lock on memories would block the drop.
        with self.memory.unit(admin=True) as holder:
            if not vector_index.try_lock(holder.session):
                yield False
                return
            with self.memory.unit(admin=True) as repo:
                vector_index.drop(repo.session)
            try:
                yield True
            finally:
                if notify is not None:
                    notify("Building the vector index…")
                with self.memory.unit(admin=True) as repo:
                    vector_index.create(repo.session, repo.index_kind(), self.memory.embedder.dim)
