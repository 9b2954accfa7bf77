"""The asyncio API: `AsyncMemory`, Memory's verbs awaitable, on SQLAlchemy's asyncio extension and asyncpg.

There is one implementation. Each verb runs Memory's own code in a greenlet (SQLAlchemy's asyncio bridge,
the mechanism its AsyncSession is built on): every database call of that code goes through an asyncpg
engine and is awaited on the caller's event loop, so other tasks run while PostgreSQL answers; the local
model and the embedded server's start run on worker threads, provider calls on the openai SDK's async
client (memagent.bridge). Row-level security, units of work, errors and results are Memory's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from memagent.api import Memory
from memagent.config import Settings
from memagent.errors import MemagentError
from memagent.providers.chat import ChatModel
from memagent.providers.embeddings import Embedder
from memagent.records import History, LearnReport, MemoryRecord, RecallResult, RememberResult
from memagent.store.database import Driver

if TYPE_CHECKING:
    from memagent.usecases.chat import TurnResult
    from memagent.usecases.compression import CompressReport

T = TypeVar("T")


class _BridgedMemory(Memory):
    """Memory over the asyncpg engine: its methods are called from AsyncMemory's greenlets only."""

    _driver: ClassVar[Driver] = "asyncpg"


class AsyncMemory:
    """Long-term memory for an agent, for asyncio code: the verbs of `Memory`, awaitable.

    Configured like Memory (settings, environment, keyword overrides). The database is opened on first use;
    `async with AsyncMemory() as memory:` (or `await memory.aclose()`) releases it. Calls may run
    concurrently from one event loop: they share a pool of connections. Needs the `async` extra
    (asyncpg, greenlet).
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        chat_model: ChatModel | str | None = None,
        **overrides: Any,
    ) -> None:
        self._sync = _BridgedMemory(settings=settings, embedder=embedder, chat_model=chat_model, **overrides)
        self.settings = self._sync.settings
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop this memory's connections belong to
        self._running = 0
        self._idle: asyncio.Event | None = None
        self._closing: asyncio.Future[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(*args, **kwargs), Memory's code, in a greenlet whose database calls this loop awaits."""
        from sqlalchemy.util import greenlet_spawn

        if self._closing is not None:
            raise MemagentError("this AsyncMemory is closing: call it again once aclose() has returned.")
        self._follow_loop()
        self._running += 1
        try:
            return await greenlet_spawn(fn, *args, **kwargs)
        finally:
            self._running -= 1
            if self._running == 0 and self._idle is not None:
                self._idle.set()

    def _follow_loop(self) -> None:
        """Connections belong to the event loop they were made on. Called from another loop (asyncio.run
        once more, a test framework's loop per test), this memory lets the old loop's connections go (they
        can be neither used nor closed from here) and opens the database anew on this one."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            self._sync._app.abandon()
            self._idle = None
        self._loop = loop

    async def aclose(self) -> None:
        """Wait for the calls in flight, then release the database (and the embedded server, when this was
        its last user). Calls made meanwhile raise; a later call opens the database again, as Memory's do."""
        self._follow_loop()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        closing = self._closing
        await asyncio.shield(closing)  # a second aclose() waits for the first; a cancelled one lets it finish

    async def _close(self) -> None:
        from sqlalchemy.util import greenlet_spawn

        try:
            while self._running:
                self._idle = asyncio.Event()
                await self._idle.wait()
            await greenlet_spawn(self._sync.close)
        finally:
            self._closing = None

    async def __aenter__(self) -> AsyncMemory:
        await self._call(self._sync._memory)  # open now: a database that cannot be reached says so here
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- verbs: Memory's, awaitable --------------------------------------------------------------------------

    async def remember(
        self,
        text: str,
        *,
        session_id: str | None = None,
        namespace: str | None = None,
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
        extract: bool = False,
    ) -> RememberResult:
        """Embed and store a text (see Memory.remember)."""
        return await self._call(
            self._sync.remember,
            text,
            session_id=session_id,
            namespace=namespace,
            metadata=metadata,
            created_at=created_at,
            extract=extract,
        )

    async def recall(
        self,
        query: str,
        *,
        k: int | None = None,
        session_id: str | None = None,
        namespace: str | None = None,
        max_distance: float | None = None,
        kinds: Sequence[str] | None = None,
        as_of: datetime | None = None,
        include_archived: bool = False,
    ) -> RecallResult:
        """The memories most similar to the query, most similar first (see Memory.recall)."""
        return await self._call(
            self._sync.recall,
            query,
            k=k,
            session_id=session_id,
            namespace=namespace,
            max_distance=max_distance,
            kinds=kinds,
            as_of=as_of,
            include_archived=include_archived,
        )

    async def recent(
        self, *, limit: int = 5, session_id: str | None = None, namespace: str | None = None
    ) -> list[MemoryRecord]:
        """The newest memories."""
        return await self._call(self._sync.recent, limit=limit, session_id=session_id, namespace=namespace)

    async def count(self, *, session_id: str | None = None, namespace: str | None = None) -> int:
        """How many memories there are in the namespace (or session)."""
        return await self._call(self._sync.count, session_id=session_id, namespace=namespace)

    async def pending(self, *, namespace: str | None = None) -> int:
        """How many memories of the namespace wait for their embedding."""
        return await self._call(self._sync.pending, namespace=namespace)

    async def backfill(self) -> int:
        """Embed every memory stored while the provider was failing; returns how many."""
        return await self._call(self._sync.backfill)

    async def purge(
        self,
        *,
        session_id: str | None = None,
        before: datetime | None = None,
        namespace: str | None = None,
        everything: bool = False,
        archived: bool = False,
    ) -> int:
        """Delete memories of the namespace (see Memory.purge)."""
        return await self._call(
            self._sync.purge,
            session_id=session_id,
            before=before,
            namespace=namespace,
            everything=everything,
            archived=archived,
        )

    async def extract(self, *, namespace: str | None = None, limit: int = 100) -> LearnReport:
        """Learn facts from stored exchanges not yet processed (see Memory.extract)."""
        return await self._call(self._sync.extract, namespace=namespace, limit=limit)

    async def facts(
        self, *, namespace: str | None = None, limit: int = 20, as_of: datetime | None = None
    ) -> list[MemoryRecord]:
        """The facts memagent believes now (or believed as_of), newest first."""
        return await self._call(self._sync.facts, namespace=namespace, limit=limit, as_of=as_of)

    async def history(self, memory_id: int, *, namespace: str | None = None) -> History:
        """A memory's chain and events (see Memory.history)."""
        return await self._call(self._sync.history, memory_id, namespace=namespace)

    async def compress(
        self,
        older_than: timedelta | str,
        *,
        session_id: str | None = None,
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> CompressReport:
        """Summarise old exchanges per session and archive them (see Memory.compress)."""
        return await self._call(
            self._sync.compress, older_than, session_id=session_id, namespace=namespace, dry_run=dry_run
        )

    async def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        namespace: str | None = None,
        this_session_only: bool = False,
    ) -> TurnResult:
        """One chat turn: recall, ask the chat model, store the exchange (see Memory.chat)."""
        return await self._call(
            self._sync.chat,
            message,
            session_id=session_id,
            namespace=namespace,
            this_session_only=this_session_only,
        )
