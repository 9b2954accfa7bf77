"""Recall re-ranked by recency and importance (MEMAGENT_RECENCY_HALF_LIFE_DAYS, MEMAGENT_IMPORTANCE_WEIGHT):
the `depth` best of a recall's ranking, re-scored in Python."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from memagent.records import RecalledMemory


def reranks(half_life: timedelta | None, importance_weight: float) -> bool:
    """Whether recall re-ranks its `depth` best in Python (recency or importance on)."""
    return half_life is not None or importance_weight > 0


def reranked(
    found: list[RecalledMemory],
    mode: Literal["vector", "text", "hybrid"],
    half_life: timedelta | None,
    importance_weight: float,
) -> list[RecalledMemory]:
    """The candidates re-scored by recency and importance, best first.

    Both are factors on the relevance score rather than the Generative Agents sum of min-max normalised
    terms: a product needs no normalisation over the candidates (whose spread depends on the query and the
    mode: RRF, BM25 or cosine), so a memory's score does not move with what else was recalled. The
    importance factor (1 - w) + 2w * importance is 1 at the default importance 0.5, so memories of default
    importance (every exchange) keep their relevance, and w = 1 scales a score by 2 * importance (0 to 2).
    """
    now = datetime.now(UTC)
    seconds = half_life.total_seconds() if half_life is not None else 0.0

    def weighted(memory: RecalledMemory) -> float:
        score = (1.0 + memory.score) / 2 if mode == "vector" else memory.score  # cosine -1..1 to 0..1
        if half_life is not None:
            score *= 0.5 ** (max((now - memory.created_at).total_seconds(), 0.0) / seconds)
        if importance_weight > 0:
            score *= (1.0 - importance_weight) + 2.0 * importance_weight * memory.importance
        return float(score)

    rescored = [replace(memory, score=weighted(memory)) for memory in found]
    return sorted(rescored, key=lambda memory: (-memory.score, memory.id))
