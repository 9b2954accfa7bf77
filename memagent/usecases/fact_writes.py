"""Learning's writes of facts: each text's embedding computed once, and facts stored so that a namespace
keeps one memory per text without ever taking an expired fact, a summary or an exchange for a current fact."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from memagent.agent.learning_prompts import Fact
from memagent.errors import InputError
from memagent.records import MemoryRecord
from memagent.store.memories import NewMemory
from memagent.store.unit import Store
from memagent.usecases.service import MemoryService


def store_facts(
    store: Store, exchange: MemoryRecord, facts: Sequence[tuple[str, float]], vectors: Vectors, model: str
) -> list[tuple[int, bool]]:
    """Store the facts (text, importance) learnt from an exchange: (id, stored now) each. A text the
    namespace already holds as a current fact is that fact (another run learnt it too); one it holds
    otherwise (an expired fact, a summary, an exchange) is stored again, marked, since a namespace keeps
    one memory per text."""
    day = exchange.created_at.astimezone(UTC).strftime("%Y-%m-%d")

    def memory(text: str, meaning: str, importance: float) -> NewMemory:
        return NewMemory(
            namespace=exchange.namespace,
            session_id=exchange.session_id,
            content=text,
            embedding=vectors[meaning],
            embedding_model=model,
            metadata={},
            created_at=exchange.created_at,  # when it was said: the fact holds from then
            kind="fact",
            importance=importance,
        )

    stored = store.memories.add_many([memory(text, text, importance) for text, importance in facts])
    kinds = store.memories.kinds_of([memory_id for memory_id, created in stored if not created])
    found = []
    for (text, importance), (memory_id, created) in zip(facts, stored, strict=True):
        again = 0
        while not created and kinds.get(memory_id) != "fact":
            # Held, but not as a current fact: a new memory, whose text must differ. Its embedding stays
            # the fact's (the mark adds nothing to its meaning).
            again += 1
            if again > 20:
                raise InputError(f"the fact {text!r} is already held as 20 other memories.")
            said = "restated" if kinds.get(memory_id) == "expired" else "fact of"
            mark = f"{said} {day}" + (f", {again}" if again > 1 else "")
            memory_id, created = store.memories.add_many([memory(f"{text} ({mark})", text, importance)])[0]
            if not created:
                kinds |= store.memories.kinds_of([memory_id])
        found.append((memory_id, created))
    return found


class Vectors(dict[str, Any]):
    """Each text's embedding, computed once (new texts in one batch)."""

    def __init__(self, service: MemoryService) -> None:
        super().__init__()
        self._service = service

    def add(self, texts: Sequence[str]) -> None:
        """Embed the texts not embedded yet (a ProviderError leaves the exchange for later)."""
        missing = list(dict.fromkeys(text for text in texts if text not in self))
        if missing:
            self.update(zip(missing, self._service.embedder.embed(missing), strict=True))


def distinct(facts: list[Fact]) -> list[Fact]:
    """The facts with repeated texts once (the most important copy)."""
    best: dict[str, Fact] = {}
    for fact in facts:
        if fact.text not in best or fact.importance > best[fact.text].importance:
            best[fact.text] = fact
    return list(best.values())
