"""One database, one embedding space: the check before every write and read, and the fixes it names."""

from __future__ import annotations

from memagent.config import KNOWN_DIMENSIONS, LOCAL_MODEL, MAX_INDEXED_DIM
from memagent.errors import EmbeddingMismatchError
from memagent.providers.embeddings import Embedder
from memagent.store.unit import Store


def check_space(store: Store, embedder: Embedder, *, claim: bool) -> bool:
    """Refuse a model the database was not built for; returns False if nothing was ever stored."""
    model, dim = embedder.model, embedder.dim
    space = store.space.get()
    if space is None:
        column_dim = store.space.column_dimension()
        if column_dim is not None and column_dim != dim:
            raise EmbeddingMismatchError(
                f"this database was set up for {column_dim}-dimension vectors, but embedding model "
                f"{model} makes {dim}-dimension vectors.",
                hint="Configure a model of that dimension, or use a fresh database.",
            )
        if not claim:
            return False
        space = store.space.claim(model, dim)
    if space != (model, dim):
        raise EmbeddingMismatchError(
            f"this database holds embeddings from {space[0]} ({space[1]} dimensions), but the configured "
            f"embedding model is {model} ({dim} dimensions).",
            hint=mismatch_hint(space, embedder),
        )
    return True


def mismatch_hint(space: tuple[str, int], configured: Embedder) -> str:
    """The two fixes that work when the configured model is not the database's: use the database's model, or
    move the database to the configured one."""
    model, dim = space
    if model in (LOCAL_MODEL, f"sentence-transformers/{LOCAL_MODEL}"):
        use = "Set MEMAGENT_EMBEDDING_PROVIDER=local and unset MEMAGENT_EMBEDDING_MODEL (the bundled model)"
    else:
        use = (
            f"Set MEMAGENT_EMBEDDING_PROVIDER=openai, MEMAGENT_EMBEDDING_MODEL={model} and "
            f"MEMAGENT_EMBEDDING_DIM={dim} (with the endpoint and key that serve it)"
        )
    move = f"memagent reembed --model {configured.model} --provider {configured.provider}"
    if configured.dim > MAX_INDEXED_DIM:  # pgvector's HNSW index takes at most 2,000: ask for shorter vectors
        move += " --dim 1536"
    elif KNOWN_DIMENSIONS.get(configured.model) != configured.dim:
        move += f" --dim {configured.dim}"
    return f"{use}, or move the database to {configured.model} with `{move}`."
