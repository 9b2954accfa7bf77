"""What every embedder's output must be before it reaches the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from memagent.errors import ProviderError
from memagent.validation import MAX_VECTOR_NORM, MIN_VECTOR_NORM

if TYPE_CHECKING:
    from numpy.typing import NDArray


def check_vectors(vectors: NDArray[np.float32], count: int, dim: int, model: str) -> NDArray[np.float32]:
    """Refuse a provider's answer of the wrong shape, with non-finite values or zero vectors."""
    if vectors.shape != (count, dim):
        raise ProviderError(
            f"embedding model {model} returned vectors of shape {vectors.shape}, expected ({count}, {dim}).",
            hint="Check MEMAGENT_EMBEDDING_DIM.",
        )
    if not np.all(np.isfinite(vectors)):
        raise ProviderError(f"embedding model {model} returned non-finite values.")
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    if np.any(norms < MIN_VECTOR_NORM):
        # Cosine distance to a zero (or nearly zero) vector is undefined, and HNSW never indexes one.
        raise ProviderError(f"embedding model {model} returned a zero vector.")
    if np.any(norms > MAX_VECTOR_NORM):
        raise ProviderError(
            f"embedding model {model} returned a vector too long to compare (float32 overflows)."
        )
    return vectors
