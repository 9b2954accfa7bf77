"""What every embedder's output must be before it reaches the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from memagent.errors import ProviderError
from memagent.validation import vector_length_problem

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
    # Cosine distance to a zero (or nearly zero) vector is undefined, and HNSW never indexes one.
    for norm in np.linalg.norm(vectors.astype(np.float64), axis=1):
        problem = vector_length_problem(float(norm))
        if problem is not None:
            raise ProviderError(f"embedding model {model} returned {problem}.")
    return vectors
