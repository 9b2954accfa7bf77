"""Plain dataclasses handed to callers and renderers (never ORM objects)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class MemoryRecord:
    """One stored memory as the caller sees it."""

    id: int
    namespace: str
    session_id: str
    content: str
    created_at: datetime
    embedding_model: str
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = "exchange"  # exchange (what was said), fact (extracted) or summary (compressed)
    importance: float = 0.5  # 0-1

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO dates)."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class RecalledMemory(MemoryRecord):
    """A memory returned by recall, with its cosine distance to the query and its ranking score."""

    # None when there is no vector to compare: the memory's embedding is pending, or the query could not
    # be embedded (provider down) and recall fell back to full-text search.
    distance: float | None = 0.0
    score: float = 0.0  # vector: similarity; text: BM25; hybrid: reciprocal-rank-fusion score
    # The memories a fact or summary came from (their ids); recall leaves out a memory that a better-ranked
    # fact in the result came from, so the result's k places hold k different things.
    sources: tuple[int, ...] = ()

    @property
    def similarity(self) -> float | None:
        """Cosine similarity, 1 - distance (None without vectors)."""
        return None if self.distance is None else 1.0 - self.distance

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO dates, similarity included)."""
        data = super().to_json()
        data["similarity"] = None if self.similarity is None else round(self.similarity, 6)
        data["score"] = round(self.score, 6)
        return data


class RecallResult(list[RecalledMemory]):
    """What recall found, best first (a list of RecalledMemory), and whether it had to make do.

    degraded: why recall fell back to full-text search (the embeddings provider's error), or None.
    mode: the ranking the list is in (each memory's `score` is that ranking's).
    """

    def __init__(
        self, memories: Iterable[RecalledMemory] = (), degraded: str | None = None, mode: str = "hybrid"
    ) -> None:
        super().__init__(memories)
        self.degraded = degraded
        self.mode = mode  # the ranking used: hybrid, vector or text (text when recall degraded)

    @property
    def memories(self) -> list[RecalledMemory]:
        """The memories as a plain list."""
        return list(self)


@dataclass(frozen=True)
class RememberResult:
    """What `remember` did: the memory's id and whether it was new or already stored."""

    id: int
    created: bool
    namespace: str
    session_id: str
    # Why the memory was stored without its embedding (the provider's error), or None: `memagent backfill`
    # (or any later run whose embedding calls succeed) fills it in; full-text recall finds it meanwhile.
    pending_reason: str | None = None
    # How many leading characters the embedding read, when the model's input limit cut the text short
    # (the text itself is stored whole); None when it read everything.
    embedded_chars: int | None = None
    # What learning made of it, when asked to (remember with extract=True); its `failed` says why not.
    learned: LearnReport | None = None

    @property
    def pending(self) -> bool:
        """Whether the memory waits for its embedding."""
        return self.pending_reason is not None


@dataclass(frozen=True)
class HistoryEntry:
    """One memory of a fact's chain: the memory, when it held and when memagent believed it, its sources."""

    memory: MemoryRecord
    learned_at: datetime  # when memagent learnt it
    invalid_at: datetime | None  # when it stopped holding in the conversation, if it did
    expired_at: datetime | None  # when memagent stopped believing it, if it did
    superseded_by: int | None  # what replaced it
    archived_at: datetime | None  # when it was compressed into a summary
    sources: tuple[int, ...] = ()  # the memories it came from

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO dates)."""
        data = self.memory.to_json()
        for name in ("learned_at", "invalid_at", "expired_at", "archived_at"):
            moment = getattr(self, name)
            data[name] = None if moment is None else moment.isoformat()
        data["superseded_by"] = self.superseded_by
        data["sources"] = list(self.sources)
        return data


@dataclass(frozen=True)
class EventRecord:
    """One change learning made (a memory_events row), with the model's reason."""

    id: int
    memory_id: int | None
    action: str  # add, update, invalidate, noop, extract, summarize, archive
    related_id: int | None
    reason: str | None
    details: dict[str, Any]
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO dates)."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class History:
    """A memory's chain (what it replaced and what replaced it, in the order learnt) and the events."""

    entries: list[HistoryEntry]
    events: list[EventRecord]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "chain": [entry.to_json() for entry in self.entries],
            "events": [event.to_json() for event in self.events],
        }


@dataclass
class ModelCost:
    """What the model calls of one operation cost: calls, tokens, and seconds spent waiting for them."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    invalid_replies: int = 0  # replies that were not JSON of the schema (each asked again once)
    reasons: list[str] = field(default_factory=list)

    def add(self, other: ModelCost) -> None:
        """Count another operation's calls in this one."""
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.seconds += other.seconds
        self.invalid_replies += other.invalid_replies


@dataclass
class LearnReport:
    """What one extraction run did (counts over its exchanges) and what its model calls cost."""

    exchanges: int = 0  # exchanges whose facts are now learnt
    added: list[int] = field(default_factory=list)  # ids of the facts stored
    updated: int = 0  # facts replaced by a newer one
    invalidated: int = 0  # facts that no longer hold
    unchanged: int = 0  # facts already held (their sources gained this exchange)
    refused: int = 0  # decisions naming a fact the model was not shown (applied as plain adds)
    skipped: int = 0  # exchanges another run learnt meanwhile
    failed: list[tuple[int, str]] = field(default_factory=list)  # (exchange id, why): left for later
    waiting: int = 0  # exchanges of the namespace still waiting afterwards (counted when ids is None)
    cost: ModelCost = field(default_factory=ModelCost)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "exchanges": self.exchanges,
            "added": self.added,
            "updated": self.updated,
            "invalidated": self.invalidated,
            "unchanged": self.unchanged,
            "refused": self.refused,
            "skipped": self.skipped,
            "failed": [{"id": memory_id, "error": error} for memory_id, error in self.failed],
            "waiting": self.waiting,
            "model_calls": self.cost.calls,
            "prompt_tokens": self.cost.prompt_tokens,
            "completion_tokens": self.cost.completion_tokens,
        }
