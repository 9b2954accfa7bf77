"""LangGraph: MemagentStore, a LangGraph BaseStore kept in memagent (pip install "memagent[langgraph]").

A namespace tuple is one memagent namespace: its labels joined by "." (("users", "alice") is
"users.alice"). LangGraph itself forbids "." in a label, so the join is never ambiguous and reads naturally
in `memagent recall --namespace users.alice`. An item is one memory of that namespace: its text (what recall
searches) comes from the value's indexed fields, and its key, value and times ride in the memory's metadata,
so get() returns exactly what put() stored.
"""

from __future__ import annotations

import asyncio
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

try:
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        InvalidNamespaceError,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
    )
    from langgraph.store.base.embed import get_text_at_path, tokenize_path
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'memagent.integrations.langgraph needs LangGraph: pip install "memagent[langgraph]"'
    ) from exc

from memagent import bridge
from memagent.api import Memory
from memagent.async_api import AsyncMemory
from memagent.usecases.items import (
    StoredItem,
    delete_item,
    get_item,
    item_namespaces,
    list_items,
    put_item,
    search_items,
)
from memagent.usecases.service import MemoryService
from memagent.validation import validate_name

SEPARATOR = "."
# A filtered semantic search ranks this many candidates per namespace (at least) before filtering: recall
# returns its k best, and the filter may drop some of them.
FILTERED_CANDIDATES = 100
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _labels(namespace: tuple[str, ...]) -> tuple[str, ...]:
    """Check each label can be part of a memagent namespace name (InvalidNamespaceError says why not)."""
    if not isinstance(namespace, tuple):
        raise InvalidNamespaceError(f"a namespace is a tuple of strings, not {type(namespace).__name__}.")
    for label in namespace:
        if not isinstance(label, str) or not label:
            raise InvalidNamespaceError(f"namespace {namespace!r}: each label is a non-empty string.")
        if SEPARATOR in label:
            raise InvalidNamespaceError(
                f"namespace {namespace!r}: label {label!r} contains {SEPARATOR!r}, which joins the labels "
                "into memagent's namespace name."
            )
        if not label.isprintable():
            raise InvalidNamespaceError(f"namespace {namespace!r}: label {label!r} has control characters.")
    return namespace


def namespace_name(namespace: tuple[str, ...]) -> str:
    """The memagent namespace a LangGraph namespace tuple maps to (InvalidNamespaceError if none can)."""
    if not _labels(namespace):
        raise InvalidNamespaceError("a namespace needs at least one label.")
    name = SEPARATOR.join(namespace)
    try:
        return validate_name(name, "namespace")
    except ValueError as exc:
        raise InvalidNamespaceError(f"namespace {namespace!r} (memagent's {name!r}): {exc}.") from None


def namespace_tuple(name: str) -> tuple[str, ...]:
    """The LangGraph namespace tuple of a memagent namespace name."""
    return tuple(name.split(SEPARATOR))


def _compare(actual: Any, wanted: Any) -> bool:
    """Whether a value field matches a filter entry: a value, a nested object, or {"$op": value, ...}."""
    if isinstance(wanted, Mapping):
        if any(str(name).startswith("$") for name in wanted):
            return all(_apply(actual, name, bound) for name, bound in wanted.items())
        return isinstance(actual, Mapping) and all(_compare(actual.get(k), v) for k, v in wanted.items())
    return bool(actual == (list(wanted) if isinstance(wanted, tuple) else wanted))  # JSON has lists


def _apply(actual: Any, name: str, bound: Any) -> bool:
    if name == "$eq":
        return _compare(actual, bound)
    if name == "$ne":
        return not _compare(actual, bound)
    if name not in _ORDER:
        raise ValueError(f"unsupported filter operator {name!r}: use $eq, $ne, $gt, $gte, $lt or $lte.")
    try:
        return bool(_ORDER[name](actual, bound))
    except TypeError:  # a missing field, or a string against a number: no match, as in SQL
        return False


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    part = (
        namespace[: len(path)]
        if condition.match_type == "prefix"
        else namespace[len(namespace) - len(path) :]
    )
    return all(want in ("*", got) for got, want in zip(part, path, strict=True))


class MemagentStore(BaseStore):
    """A LangGraph store whose items are memagent memories: put/get/delete by key, semantic search by
    memagent's recall (hybrid by default), filters on value fields, namespace listing.

    `MemagentStore(Memory(...))`, then `graph.compile(store=store)`; `MemagentStore(AsyncMemory(...))` for
    async graphs (its async methods run on the event loop, through asyncpg; its sync ones refuse).
    index={"fields": ["content"]} chooses the value fields that become the searchable text (LangGraph's
    JSON paths; default "$", the whole value).
    memagent embeds with its own embedder, so the index's "embed" and "dims" are not used; an item whose
    fields hold no text is searchable by its whole value as JSON. Items have no TTL.
    """

    def __init__(
        self, memory: Memory | AsyncMemory | MemoryService, *, index: Mapping[str, Any] | None = None
    ) -> None:
        self._async = memory if isinstance(memory, AsyncMemory) else None
        if isinstance(memory, AsyncMemory):
            self._service: Callable[[], MemoryService] = memory._sync._memory
        elif isinstance(memory, Memory):
            self._service = memory._memory
        else:
            self._service = lambda: memory
        self._fields = self._paths((index or {}).get("fields") or ["$"])

    @staticmethod
    def _paths(fields: Sequence[str]) -> list[Any]:
        return [field if field == "$" else tokenize_path(field) for field in fields]

    def _text(self, value: Mapping[str, Any], index: Any) -> str:
        """The text an item is searched by: its indexed fields' texts, or else its whole value as JSON."""
        paths = self._fields if index is None else [] if index is False else self._paths(index)
        texts = [text for path in paths for text in get_text_at_path(value, path) if text.strip()]
        # memagent has no unsearchable memory: with no text to index, the JSON itself is the text.
        return "\n".join(texts) or json.dumps(value, ensure_ascii=False, sort_keys=True)

    # -- BaseStore --------------------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order, each in its own unit of work (a put is seen by later gets)."""
        if self._async is not None and not bridge.bridged():
            raise TypeError(
                "this MemagentStore is over an AsyncMemory: use its async methods (aget, aput, asearch, "
                "adelete, alist_namespaces), as LangGraph does in async graphs, or give it a Memory."
            )
        return [self._run(op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """batch() without blocking the event loop: over an AsyncMemory, through its asyncpg engine on this
        loop; over a Memory, on a worker thread. BaseStore's aget/aput/asearch/adelete/alist_namespaces
        come through it."""
        listed = list(ops)
        if self._async is not None:
            return await self._async._call(self.batch, listed)
        return await asyncio.to_thread(self.batch, listed)

    def _run(self, op: Op) -> Result:
        service = self._service()
        if isinstance(op, GetOp):
            found = get_item(service, namespace_name(op.namespace), op.key)
            return None if found is None else self._item(found)
        if isinstance(op, PutOp):
            name = namespace_name(op.namespace)
            if op.value is None:
                delete_item(service, name, op.key)
            else:
                put_item(service, name, op.key, op.value, self._text(op.value, op.index))
            return None
        if isinstance(op, SearchOp):
            return self._search(service, op)
        if isinstance(op, ListNamespacesOp):
            return self._namespaces(service, op)
        raise ValueError(f"unknown store operation {type(op).__name__}.")

    @staticmethod
    def _item(found: StoredItem) -> Item:
        return Item(
            value=found.value,
            key=found.key,
            namespace=namespace_tuple(found.namespace),
            created_at=found.created_at,
            updated_at=found.updated_at,
        )

    def _search(self, service: MemoryService, op: SearchOp) -> list[SearchItem]:
        """Items under the prefix: ranked by recall when there is a query (the namespaces' results merged
        by score), else most recently put first; the filter applies to the value's fields."""
        prefix = _labels(op.namespace_prefix)
        names = [name for name in item_namespaces(service) if namespace_tuple(name)[: len(prefix)] == prefix]
        wanted = op.offset + op.limit
        if not names or op.limit <= 0:
            return []
        if op.query:
            k = min(1000, max(wanted, FILTERED_CANDIDATES) if op.filter else wanted)
            found = [item for name in names for item in search_items(service, name, op.query, k=k)]
            found.sort(key=lambda item: item.score or 0.0, reverse=True)
        elif not op.filter:  # paged by the database
            found = list_items(service, names, limit=op.limit, offset=op.offset)
            return [self._scored(item) for item in found]
        else:
            found = list_items(service, names)
        if op.filter:
            found = [
                item for item in found if all(_compare(item.value.get(k), v) for k, v in op.filter.items())
            ]
        return [self._scored(item) for item in found[op.offset : wanted]]

    def _scored(self, found: StoredItem) -> SearchItem:
        return SearchItem(
            namespace=namespace_tuple(found.namespace),
            key=found.key,
            value=found.value,
            created_at=found.created_at,
            updated_at=found.updated_at,
            score=found.score,
        )

    @staticmethod
    def _namespaces(service: MemoryService, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        """The namespaces holding items that meet every condition, cut to max_depth, sorted, paged."""
        conditions = op.match_conditions or ()
        for condition in conditions:
            _labels(tuple(label for label in condition.path if label != "*"))
        found = [namespace_tuple(name) for name in item_namespaces(service)]
        found = [ns for ns in found if all(_matches(condition, ns) for condition in conditions)]
        if op.max_depth is not None:
            found = [ns[: op.max_depth] for ns in found]
        return sorted(set(found))[op.offset : op.offset + op.limit]
