"""What memagent has learnt, read back: the current facts, and a memory's history (its chain and events)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from memagent.errors import InputError
from memagent.records import History, MemoryRecord
from memagent.store.scope import View
from memagent.usecases.service import MemoryService
from memagent.validation import clean_date, whole


def facts(
    service: MemoryService,
    *,
    namespace: str | None = None,
    limit: int = 20,
    as_of: datetime | None = None,
) -> list[MemoryRecord]:
    """The facts memagent believes now (or believed as_of), newest first."""
    limit = whole(limit, "limit")
    if not 1 <= limit <= 10000:
        raise InputError(f"limit must be between 1 and 10000, not {limit}.")
    view = View(kinds=("fact",), as_of=clean_date(as_of, "as-of date") if as_of is not None else None)
    scope = replace(service.scope(namespace), view=view)
    with service.unit(scope.namespace) as store:
        return store.memories.recent(scope, limit=limit)


def history(service: MemoryService, memory_id: int, *, namespace: str | None = None) -> History:
    """A memory's chain — what it replaced and what replaced it, in the order learnt, with when each held
    and was believed — and every event about them, with the model's reasons."""
    if isinstance(memory_id, bool) or not isinstance(memory_id, int) or not 1 <= memory_id < 2**63:
        raise InputError(f"a memory id is a whole number from 1 to {2**63 - 1}, not {memory_id!r}.")
    scope = service.scope(namespace)
    with service.unit(scope.namespace) as store:
        entries = store.lifecycle.chain(memory_id)
        if not entries:
            raise InputError(f"no memory {memory_id} in namespace {scope.namespace!r}.")
        events = store.lifecycle.events([entry.memory.id for entry in entries])
    return History(entries, events)
