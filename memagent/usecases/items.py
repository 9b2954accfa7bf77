"""Key-value items kept as memories (what LangGraph's store holds): put replaces by key, get, delete, list,
search. Each call is one unit of work; an item is a memory whose metadata holds its key, value and times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from memagent.errors import InputError, ProviderError
from memagent.records import MemoryRecord
from memagent.store.items import ITEM
from memagent.store.memories import NewMemory
from memagent.usecases.service import MemoryService
from memagent.validation import ALL_NAMESPACES, clean_metadata, clean_text

# The session items are stored in: a key-value item belongs to no conversation.
ITEM_SESSION = "store-items"


@dataclass(frozen=True)
class StoredItem:
    """One item: its namespace, key and value, when it was first put and last replaced; search's score."""

    namespace: str
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    score: float | None = None


def as_item(memory: MemoryRecord, score: float | None = None) -> StoredItem | None:
    """The item a memory holds, or None if the memory is not an item (an exchange, a learnt fact)."""
    part = memory.metadata.get(ITEM)
    if not isinstance(part, dict) or not isinstance(part.get("key"), str):
        return None
    try:  # a memory whose metadata merely looks like an item (stored by remember or import) is not one
        return StoredItem(
            namespace=memory.namespace,
            key=part["key"],
            value=dict(part.get("value") or {}),
            created_at=datetime.fromisoformat(part["created_at"]),
            updated_at=datetime.fromisoformat(part["updated_at"]),
            score=score,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise InputError(f"an item key is a string, not {type(key).__name__}.")
    if "\x00" in key:
        raise InputError("an item key cannot contain NUL characters (PostgreSQL cannot store them).")
    return key


def put_item(
    service: MemoryService, namespace: str, key: str, value: Mapping[str, Any], text: str
) -> StoredItem:
    """Store `value` under `key` in the namespace, searchable by `text`, replacing the item the key held.

    The old item's deletion and the new one's insertion are one transaction: a reader sees one or the
    other. The replacement keeps the first put's created_at. When the provider cannot embed the text, the
    item is stored now and embedded later (as remember does); full-text search finds it meanwhile.
    """
    scope = service.scope(namespace, ITEM_SESSION)
    assert scope.session_id is not None
    key, content = _key(key), clean_text(text, "item's text")
    now = datetime.now(UTC)
    part: dict[str, Any] = {
        "key": key,
        "value": dict(value),
        "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
    }
    meta = clean_metadata({ITEM: part})  # checks the value is JSON (and holds no NUL)
    embedder = service.embedder
    try:
        vector: Any = embedder.embed([content])[0]
    except ProviderError:
        vector = None
    with service.unit(scope.namespace) as store:
        service.check_embedding_space(store, claim=True)
        if service.embedder is not embedder:  # the database moved to another model: embed it later
            vector = None
        store.items.lock(scope.namespace, key)
        old = store.items.delete(scope.namespace, key)
        if old and isinstance(old[0].metadata.get(ITEM), dict):
            meta[ITEM]["created_at"] = old[0].metadata[ITEM].get("created_at", part["created_at"])
        memory = NewMemory(
            namespace=scope.namespace,
            session_id=scope.session_id,
            content=content,
            embedding=vector,
            embedding_model=service.embedder.model,
            metadata=meta,
            created_at=now,
        )
        [(_, created)] = store.memories.add_many([memory])
        if not created:
            # A namespace holds a text once, and another memory (another key's item, an exchange) holds
            # this one: mark the text with the key so both stay (the vector is the unmarked text's).
            memory = replace(memory, content=f"{content}\n\n[{key}]")
            [(_, created)] = store.memories.add_many([memory])
            if not created:
                raise InputError(f"namespace {scope.namespace!r} already holds this text twice over.")
    stored = meta[ITEM]  # as the database holds it (JSON's round trip)
    return StoredItem(
        scope.namespace, key, stored["value"], datetime.fromisoformat(stored["created_at"]), now
    )


def get_item(service: MemoryService, namespace: str, key: str) -> StoredItem | None:
    """The item `key` of the namespace, or None."""
    scope = service.scope(namespace)
    with service.unit(scope.namespace) as store:
        found = store.items.find(scope.namespace, _key(key))
    return None if found is None else as_item(found)


def delete_item(service: MemoryService, namespace: str, key: str) -> bool:
    """Delete the item `key` of the namespace; whether there was one."""
    scope = service.scope(namespace)
    with service.unit(scope.namespace) as store:
        return bool(store.items.delete(scope.namespace, _key(key)))


def list_items(
    service: MemoryService, namespaces: Sequence[str], *, limit: int | None = None, offset: int = 0
) -> list[StoredItem]:
    """The items of these namespaces, most recently put first (limit None: all)."""
    names = [service.scope(name).namespace for name in namespaces]
    if not names:
        return []
    # One namespace: its own unit of work; several: one that sees them all (row-level security).
    with service.unit(names[0] if len(names) == 1 else ALL_NAMESPACES) as store:
        found = store.items.listed(names, limit=limit, offset=offset)
    return [item for item in map(as_item, found) if item is not None]


def item_namespaces(service: MemoryService) -> list[str]:
    """Every namespace that holds items, sorted."""
    with service.unit(ALL_NAMESPACES) as store:
        return store.items.namespaces()


MAX_SEARCH = 1000  # recall's largest k here: beyond it, items drowned among other memories are not found


def search_items(service: MemoryService, namespace: str, query: str, *, k: int) -> list[StoredItem]:
    """The namespace's k items best matching the query (memagent's recall, hybrid by default), best first,
    each with recall's score. Memories of the namespace that are not items (chat exchanges, facts) are
    left out; since they compete for recall's places, recall is asked for more until k items are found,
    recall has nothing more, or it reaches MAX_SEARCH."""
    asked = min(MAX_SEARCH, max(k, 1))
    while True:
        found = service.recall(query, k=asked, namespace=namespace, text_floor=0.0)  # it filters afterwards
        items = [item for item in (as_item(memory, memory.score) for memory in found) if item is not None]
        if len(items) >= k or len(found) < asked or asked >= MAX_SEARCH:
            return items[:k]
        asked = min(MAX_SEARCH, asked * 4)
