"""The Python API: `Memory`, the same verbs as the CLI for agent code, returning plain dataclasses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from memagent.bootstrap import App, release
from memagent.config import Settings, get_settings, with_overrides
from memagent.errors import InputError
from memagent.providers.chat import ChatModel, make_chat_model
from memagent.providers.embeddings import Embedder
from memagent.records import History, LearnReport, MemoryRecord, RecallResult, RememberResult
from memagent.store.database import Driver
from memagent.usecases.chat import ChatAgent, TurnResult
from memagent.usecases.history import facts as current_facts
from memagent.usecases.history import history as memory_history
from memagent.usecases.learning import Learner
from memagent.usecases.recovery import remember_or_keep
from memagent.usecases.service import MemoryService

if TYPE_CHECKING:
    from memagent.usecases.compression import CompressReport


class Memory:
    """Long-term memory for an agent.

    Configured from the same settings as the CLI (environment, .env) or from keyword arguments, which
    override them: `Memory(namespace="alice", database_url="postgresql://…")`. `chat_model` is a model
    name (`"llama3.2"`, served by the configured chat endpoint) or a ChatModel object. The database is
    opened on first use; use it as a context manager, or call close(), to release it.
    """

    _driver: ClassVar[Driver] = "psycopg2"  # AsyncMemory's Memory: asyncpg (memagent.async_api)

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        chat_model: ChatModel | str | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(chat_model, str):  # a name: the chat_model setting
            overrides["chat_model"], chat_model = chat_model, None
        if settings is not None:
            settings = with_overrides(settings, **overrides)  # validated, and its keys kept out of messages
        self.settings = settings if settings is not None else get_settings(**overrides)
        # What the CLI says on stderr (isolation off, memories stored from the recovery file, the embedder in
        # use) reaches agent code as warnings of the "memagent" logger: printed unless logging is set up.
        self._app = App(
            self.settings,
            embedder=embedder,
            notify=logging.getLogger("memagent").warning,
            driver=self._driver,
        )
        self._chat_model = chat_model
        self._agents: dict[tuple[str | None, str | None, bool], ChatAgent] = {}

    # -- lifecycle ----------------------------------------------------------------------------------------

    def _memory(self) -> MemoryService:
        return self._app.service()

    def close(self) -> None:
        """Release the database (and the embedded server, when this was its last user)."""
        self._app.close()
        release(self._chat_model)
        self._agents.clear()

    def __enter__(self) -> Memory:
        self._memory()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- verbs ----------------------------------------------------------------------------------------------

    def remember(
        self,
        text: str,
        *,
        session_id: str | None = None,
        namespace: str | None = None,
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
        extract: bool = False,
    ) -> RememberResult:
        """Embed and store a text; identical text in the namespace is stored once.

        If the database cannot be reached the memory is kept in the recovery file and KeptError (a
        DatabaseError) says where; the next time memagent reaches the database it stores it. extract: then
        learn its facts with the chat model (see extract(); ConfigError if no chat model is configured).
        """
        model = self._model() if extract else None  # fail before storing: the caller asked for both
        result = remember_or_keep(
            self._memory,
            self.settings,
            text,
            namespace=namespace,
            session_id=session_id,
            metadata=metadata,
            created_at=created_at,
            notify=logging.getLogger("memagent").warning,
        )
        if model is not None:
            learned = Learner(self._memory(), model).extract(namespace=result.namespace, ids=[result.id])
            result = replace(result, learned=learned)
        return result

    def _model(self) -> ChatModel:
        """The chat model (built from the settings on first use)."""
        self._chat_model = self._chat_model or make_chat_model(self.settings)
        return self._chat_model

    def extract(self, *, namespace: str | None = None, limit: int = 100) -> LearnReport:
        """Learn facts from the namespace's stored exchanges not yet processed (oldest first), with the chat
        model, keeping the facts held current (add, update, invalidate, noop; nothing is overwritten).
        Exchanges whose learning fails are reported in the result and wait for the next call."""
        return Learner(self._memory(), self._model()).extract(namespace=namespace, limit=limit)

    def facts(
        self, *, namespace: str | None = None, limit: int = 20, as_of: datetime | None = None
    ) -> list[MemoryRecord]:
        """The facts memagent believes now (or believed as_of), newest first."""
        return current_facts(self._memory(), namespace=namespace, limit=limit, as_of=as_of)

    def history(self, memory_id: int, *, namespace: str | None = None) -> History:
        """A memory's chain (what it replaced, what replaced it) and the events, with the model's reasons."""
        return memory_history(self._memory(), memory_id, namespace=namespace)

    def recall(
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
        """The memories most similar to the query, most similar first (a sequence of RecalledMemory).

        The result's `degraded` says why recall fell back to full-text search, when it had to. By default
        what memagent believes now (no expired fact, no archived exchange); kinds (exchange, fact,
        summary), as_of (what it believed then) and include_archived widen or narrow that.
        """
        return self._memory().recall(
            query,
            k=k,
            namespace=namespace,
            session_id=session_id,
            max_distance=max_distance,
            kinds=kinds,
            as_of=as_of,
            include_archived=include_archived,
        )

    def recent(
        self, *, limit: int = 5, session_id: str | None = None, namespace: str | None = None
    ) -> list[MemoryRecord]:
        """The newest memories."""
        return self._memory().recent(limit=limit, namespace=namespace, session_id=session_id)

    def count(self, *, session_id: str | None = None, namespace: str | None = None) -> int:
        """How many memories there are in the namespace (or session)."""
        return self._memory().count(namespace=namespace, session_id=session_id)

    def pending(self, *, namespace: str | None = None) -> int:
        """How many memories of the namespace wait for their embedding (the provider was failing)."""
        return self._memory().pending(namespace=namespace)

    def backfill(self) -> int:
        """Embed every memory stored while the provider was failing; returns how many."""
        return self._memory().backfill()

    def purge(
        self,
        *,
        session_id: str | None = None,
        before: datetime | None = None,
        namespace: str | None = None,
        everything: bool = False,
        archived: bool = False,
    ) -> int:
        """Delete memories of the namespace by session and/or date; `everything=True` for all of them;
        `archived=True`: only archived ones (exchanges compressed into a summary)."""
        if not (everything or session_id is not None or before or archived):
            raise InputError("say what to purge: session_id=, before=, archived=True or everything=True.")
        if everything and (session_id is not None or before or archived):
            raise InputError("everything=True is every memory: not with session_id=, before=, archived=True.")
        return self._memory().purge(
            namespace=namespace, session_id=session_id, before=before, archived=archived
        )

    def compress(
        self,
        older_than: timedelta | str,
        *,
        session_id: str | None = None,
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> CompressReport:
        """Summarise each session's exchanges older than `older_than` (a timedelta, or "30d", "12h", "2w")
        into one summary memory and archive them; dry_run: what would be compressed, with no model call."""
        from memagent.usecases.compression import compress

        model = None if dry_run else self._model()
        return compress(
            self._memory(),
            model,
            older_than=older_than,
            namespace=namespace,
            session_id=session_id,
            dry_run=dry_run,
        )

    def chat(
        self,
        message: str,
        *,
        session_id: str | None = None,
        namespace: str | None = None,
        this_session_only: bool = False,
    ) -> TurnResult:
        """One chat turn: recall, ask the chat model, store the exchange. Keeps per-session history."""
        key = (session_id, namespace, this_session_only)
        agent = self._agents.get(key)
        if agent is None:
            agent = ChatAgent(
                self._memory,
                self._model(),
                self.settings,
                session_id=session_id,
                namespace=namespace,
                this_session_only=this_session_only,
            )
            self._agents[key] = agent
        return agent.turn(message)
