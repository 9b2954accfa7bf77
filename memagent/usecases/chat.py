"""The chat turn: recall → prompt → reply → store the exchange (ChatAgent, one turn at a time)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from memagent.agent.exchange import exchange_text, parse_exchange
from memagent.agent.prompt import build_prompt
from memagent.config import Settings
from memagent.errors import DatabaseUnavailableError, KeptError, MemagentError, ProviderError
from memagent.providers.chat import ChatModel
from memagent.records import LearnReport, RecalledMemory, RememberResult
from memagent.usecases.learning import Learner
from memagent.usecases.recovery import remember_or_keep
from memagent.usecases.service import MemoryService
from memagent.validation import clean_name, clean_text


def new_session_id() -> str:
    """A fresh, short session id."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class TurnResult:
    """What one chat turn did: the reply (None if the model failed), the memories used, what was stored."""

    message: str
    reply: str | None
    memories: list[RecalledMemory]
    stored: RememberResult | None  # None when the database was unreachable: see kept
    error: str | None = None
    system_prompt: str = field(default="", repr=False)
    # The database error that kept this turn from being recalled against or stored, and the recovery
    # file the exchange waits in until the next run that reaches the database.
    db_error: str | None = None
    kept: Path | None = None
    # Why the memories were recalled by full-text search only (the embeddings provider's error), or None.
    degraded: str | None = None
    # What learning made of this exchange (facts added, updated …; failures wait for `memagent extract`);
    # None when it did not run (extraction off, no reply, the exchange not stored).
    learned: LearnReport | None = None


class ChatAgent:
    """A conversation over long-term memory; every exchange is stored as one memory.

    `service` opens the database on first use (memagent.bootstrap.App.service): a turn whose database is
    unreachable still answers, without memories, and keeps the exchange in the recovery file.
    """

    def __init__(
        self,
        service: Callable[[], MemoryService],
        model: ChatModel,
        settings: Settings,
        *,
        session_id: str | None = None,
        namespace: str | None = None,
        this_session_only: bool = False,
    ) -> None:
        self.service = service
        self.model = model
        self.settings = settings
        self.session_id = clean_name(session_id, "session") if session_id is not None else new_session_id()
        self.namespace = namespace
        self.this_session_only = this_session_only
        self._history: list[tuple[int, str, str]] = []  # (memory id, user, assistant) of this conversation
        self._resume = session_id is not None  # a session named by the caller continues: load its turns

    def _load_earlier_turns(self) -> None:
        """The last exchanges of a resumed session, as the conversation so far (once, on the first turn)."""
        keep = self.settings.history_turns
        if not keep:
            self._resume = False
            return
        try:
            stored = self.service().recent(
                limit=keep * 4, namespace=self.namespace, session_id=self.session_id
            )
        except DatabaseUnavailableError:
            return  # the turn goes on without them; the next one tries again
        self._resume = False
        turns = [turn for turn in map(parse_exchange, reversed(stored)) if turn is not None]
        self._history = turns[-keep:] + self._history

    def turn(
        self,
        message: str,
        on_token: Callable[[str], None] | None = None,
        on_recall: Callable[[list[RecalledMemory]], None] | None = None,
        *,
        learn: bool = True,
    ) -> TurnResult:
        """Answer one message; the user's message is stored even when the model fails.

        learn: learn the exchange's facts before returning (when extraction is on); False leaves that to
        the caller (learn(result), e.g. on another thread while the user types the next message)."""
        message = clean_text(message, "message")
        if self._resume:
            self._load_earlier_turns()
        keep = self.settings.history_turns
        history = self._history[-keep:] if keep else []
        in_context = {memory_id for memory_id, _, _ in history}
        db_error: str | None = None
        degraded: str | None = None
        recalled: list[RecalledMemory] = []
        try:
            found = self.service().recall(
                message,
                namespace=self.namespace,
                session_id=self.session_id if self.this_session_only else None,
            )
            recalled, degraded = found.memories, found.degraded
        except DatabaseUnavailableError as exc:  # answer without memories rather than not at all
            db_error = exc.message
        prompt = build_prompt(
            message,
            [m for m in recalled if m.id not in in_context],
            history=[(user, assistant) for _, user, assistant in history],
            budget=self.settings.memory_token_budget,
        )
        if on_recall is not None:
            on_recall(prompt.memories)
        pieces: list[str] = []
        error: str | None = None
        try:
            for piece in self.model.stream(prompt.messages):
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
        except ProviderError as exc:
            error = str(exc)
        reply = "".join(pieces) if error is None else None
        text, metadata = exchange_text(message, reply, chat_model=self.model.model, error=error)
        stored: RememberResult | None = None
        kept: Path | None = None
        unreachable = DatabaseUnavailableError(db_error) if db_error is not None else None

        def service() -> MemoryService:
            if unreachable is not None:  # this turn already found the database down: don't wait twice
                raise unreachable
            return self.service()

        try:
            stored = remember_or_keep(
                service,
                self.settings,
                text,
                namespace=self.namespace,
                session_id=self.session_id,
                metadata=metadata,
            )
        except KeptError as exc:
            db_error, kept = exc.reason, exc.kept
        if reply is not None and stored is not None:
            self._history.append((stored.id, message, reply))
        learned = self._learn(stored) if learn and reply is not None and stored is not None else None
        return TurnResult(
            message=message,
            reply=reply,
            memories=prompt.memories,
            stored=stored,
            error=error,
            system_prompt=prompt.messages[0].content,
            db_error=db_error,
            kept=kept,
            degraded=degraded,
            learned=learned,
        )

    def learn(self, result: TurnResult) -> LearnReport | None:
        """The facts of a turn's exchange, when the turn left them to the caller (turn(learn=False)); None
        when there is nothing to learn (extraction off, no reply, the exchange not stored)."""
        if result.reply is None or result.stored is None:
            return None
        return self._learn(result.stored)

    def _learn(self, stored: RememberResult) -> LearnReport | None:
        """The exchange's facts, learnt now (when extraction is on); a failure leaves it for later."""
        if not self.settings.extract:
            return None
        try:
            return Learner(self.service(), self.model).extract(namespace=stored.namespace, ids=[stored.id])
        except MemagentError as exc:  # the turn is answered and stored: report, don't fail it
            report = LearnReport()
            report.failed.append((stored.id, exc.message))
            return report
