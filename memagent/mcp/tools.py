"""The MCP tools' behaviour over the use cases, confined to one namespace; results as compact JSON text.

Free of the `mcp` package: server.py registers these methods as tools and maps MemagentError to tool
errors. The namespace is the server's, fixed when it starts: no argument of any tool can name another.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from memagent.bootstrap import App
from memagent.records import MemoryRecord, RecalledMemory
from memagent.store.search import SearchMode
from memagent.usecases.forget import forget
from memagent.usecases.recovery import remember_or_keep
from memagent.validation import clean_name

# What a tool may ask for at most: more memories than this would flood the model's context.
MAX_RECALL = 100
MAX_RECENT = 100


def compact(data: Any) -> str:
    """JSON without spaces, non-ASCII kept as it is (fewer tokens for the model)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def memory_json(memory: MemoryRecord) -> dict[str, Any]:
    """What a model needs of a memory: id (for forget), content, kind, session and date."""
    return {
        "id": memory.id,
        "content": memory.content,
        "kind": memory.kind,
        "session_id": memory.session_id,
        "created_at": memory.created_at.isoformat(timespec="seconds"),
    }


def recalled_json(memory: RecalledMemory) -> dict[str, Any]:
    """A recalled memory: its ranking score and its cosine similarity (null without a vector)."""
    similarity = memory.similarity
    return memory_json(memory) | {
        "score": round(memory.score, 4),
        "similarity": None if similarity is None else round(similarity, 4),
    }


class MemoryTools:
    """remember, recall, forget and recent over one opened App, in one namespace."""

    def __init__(self, app: App, namespace: str, notify: Callable[[str], None] | None = None) -> None:
        """namespace: the only one these tools read or write; notify: where catch-up messages go."""
        self.app = app
        self.namespace = clean_name(namespace, "namespace")
        self._notify = notify

    def remember(self, text: str, session_id: str | None = None) -> str:
        """Store a text (once per namespace); the database unreachable: kept in the recovery file."""
        result = remember_or_keep(
            self.app.service,
            self.app.settings,
            text,
            namespace=self.namespace,
            session_id=session_id,
            notify=self._notify,
        )
        answer: dict[str, Any] = {"id": result.id, "created": result.created, "session_id": result.session_id}
        if result.pending_reason is not None:  # stored; full-text recall finds it until it is embedded
            answer["embedding_pending"] = result.pending_reason
        return compact(answer)

    def recall(
        self,
        query: str,
        k: int | None = None,
        mode: str | None = None,
        session_id: str | None = None,
        kind: str | None = None,
    ) -> str:
        """The best memories for the query, best first, with score and similarity."""
        found = self.app.service().recall(
            query,
            k=k,
            namespace=self.namespace,
            session_id=session_id,
            mode=cast("SearchMode | None", mode),  # the service refuses any other value in one line
            kinds=[kind] if kind is not None else None,
        )
        answer: dict[str, Any] = {"memories": [recalled_json(memory) for memory in found]}
        if found.degraded:
            answer["degraded"] = f"full-text search only: {found.degraded}"
        return compact(answer)

    def forget(self, memory_id: int) -> str:
        """Delete one memory of the namespace by id."""
        gone = forget(self.app.service(), memory_id, namespace=self.namespace)
        return compact({"forgotten": memory_json(gone)})

    def recent(self, limit: int = 10) -> str:
        """The newest memories of the namespace, newest first."""
        found = self.app.service().recent(limit=limit, namespace=self.namespace)
        return compact({"memories": [memory_json(memory) for memory in found]})
