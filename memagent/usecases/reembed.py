"""Moving a database to another embedding model or dimension (`memagent reembed`).

New vectors are computed in batches into `embedding_staging` (one commit per batch, so a killed run resumes
where it stopped) while recall keeps using the old ones. The switch-over is one transaction: it blocks
writes, stages whatever arrived meanwhile, drops the HNSW index, changes the vector column's type to the new
dimension (nothing else about the column: memagent.store.staging), moves the new vectors in, builds the index
again with the one builder (memagent.store.hnsw) and records the new model.
"""

from __future__ import annotations

from collections.abc import Callable

from memagent.config import LOCAL_MODEL, MAX_INDEXED_DIM, Settings, with_overrides
from memagent.errors import InputError
from memagent.providers.embeddings import Embedder, make_embedder
from memagent.store.unit import Store
from memagent.usecases.service import MemoryService
from memagent.validation import ALL_NAMESPACES


def target_embedder(settings: Settings, *, model: str, provider: str | None, dim: int | None) -> Embedder:
    """The embedder to move to: the local one for its model name, an OpenAI-compatible one otherwise."""
    if provider is not None and provider not in ("openai", "local"):
        raise InputError(f"the provider must be openai or local, not {provider!r}.")
    local = model in (LOCAL_MODEL, f"sentence-transformers/{LOCAL_MODEL}")
    chosen = provider or ("local" if local else "openai")
    return make_embedder(
        with_overrides(settings, embedding_model=model, embedding_provider=chosen, embedding_dim=dim)
    )


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
        with self.memory.unit() as store:
            return store.space.get()

    def discard_stale(self) -> int:
        """Drop vectors an earlier, stopped re-embedding staged for another model or dimension; how many."""
        with self.memory.unit(ALL_NAMESPACES) as store:
            return store.staging.discard_others(self.target.model, self.target.dim)

    def pending(self) -> int:
        """How many memories still need a vector from the target model."""
        with self.memory.unit(ALL_NAMESPACES) as store:
            return store.staging.unstaged_count(self.target.model, self.target.dim)

    def _stage(self, store: Store) -> int:
        waiting = store.staging.unstaged(self.target.model, self.target.dim, self.batch)
        if not waiting:
            return 0
        vectors = self.target.embed([content for _, content in waiting])
        store.staging.stage(
            [(memory_id, vector) for (memory_id, _), vector in zip(waiting, vectors, strict=True)],
            self.target.model,
            self.target.dim,
        )
        return len(waiting)

    def stage_batch(self) -> int:
        """Embed and stage the next batch in its own transaction; returns how many (0: all staged)."""
        with self.memory.unit(ALL_NAMESPACES) as store:
            return self._stage(store)

    def switch(self) -> int:
        """Finish staging under a write lock and switch to the target model; returns the memory count."""
        dim = self.target.dim
        with self.memory.unit(admin=True) as store:  # retypes the column: the table owner's work
            store.index.hold_writes()  # readers go on; writers wait until the switch commits
            while self._stage(store):
                pass
            kind = store.space.index_kind()
            store.index.drop()
            store.staging.switch(dim)
            store.index.create_all(kind, dim)
            store.space.replace(self.target.model, dim, kind)
            return store.memories.count(None)

    def run(self, on_progress: Callable[[int], None] | None = None) -> int:
        """Stage everything in batches (resumable), then switch; returns how many memories moved."""
        self.discard_stale()
        while staged := self.stage_batch():
            if on_progress is not None:
                on_progress(staged)
        return self.switch()
