"""Compression: each session's old exchanges summarised by the chat model into one `summary` memory, linked
to them, and the exchanges archived (kept, recalled only when asked for).

Each session is one unit of work of its own: the summary, its links, the archiving and the events commit
together or not at all. So a run stopped halfway (a provider failure, Ctrl-C) leaves the sessions done
done and the rest untouched, and running it again finishes the rest: only unarchived exchanges are ever
compressed, and a session another run compressed meanwhile is left to it (checked under the namespace's
learning lock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from memagent import wording
from memagent.agent.summary_prompt import (
    SUMMARY_SCHEMA,
    exchange_records,
    parse_summary,
    part_record,
    record_size,
    summary_messages,
)
from memagent.errors import InputError, ModelOutputError, ProviderError
from memagent.providers.chat import ChatModel
from memagent.records import MemoryRecord, ModelCost
from memagent.store.memories import NewMemory
from memagent.store.scope import Scope, View
from memagent.store.unit import Store
from memagent.usecases.model_json import ask_json
from memagent.usecases.service import MemoryService
from memagent.validation import MIN_DATE, clean_duration, clean_name

# Characters of records per prompt (about 6k tokens): a longer session is summarised in parts, and the
# parts' summaries merged (map-reduce).
PROMPT_BUDGET = 24_000
# After this many sessions in a row failed at the provider (not in its output), the provider is taken to be
# down: the rest are left as they are rather than each waiting for its timeouts.
STOP_AFTER_FAILURES = 3


@dataclass(frozen=True)
class SessionCompression:
    """What compress did (in a dry run: would do) with one session's old exchanges."""

    session_id: str
    exchanges: int
    summary_id: int | None = None
    summary_created: bool = False
    archived: int = 0
    model_calls: int = 0
    error: str | None = None  # why the session was left as it is
    provider_failed: bool = False  # the error was the provider's (not its output's, nor the input's)


@dataclass
class CompressReport:
    """The outcome of one compress run over a namespace (plain data, for any renderer)."""

    namespace: str
    dry_run: bool
    sessions: list[SessionCompression]
    recallable_before: int  # memories recall sees by default (neither expired nor archived)
    recallable_after: int  # in a dry run: as foreseen
    cost: ModelCost = field(default_factory=ModelCost)
    stopped: str | None = None  # why sessions were left unattempted

    @property
    def compressed(self) -> list[SessionCompression]:
        """The sessions summarised and archived."""
        return [s for s in self.sessions if s.summary_id is not None]

    @property
    def exchanges_archived(self) -> int:
        """How many exchanges were archived (in a dry run: would be)."""
        if self.dry_run:
            return sum(s.exchanges for s in self.sessions)
        return sum(s.archived for s in self.sessions)

    @property
    def summaries_stored(self) -> int:
        """How many summary memories were stored."""
        return sum(1 for s in self.sessions if s.summary_created)

    @property
    def errors(self) -> list[SessionCompression]:
        """The sessions left as they were, with the reason."""
        return [s for s in self.sessions if s.error is not None]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "namespace": self.namespace,
            "dry_run": self.dry_run,
            "sessions_compressed": len(self.compressed),
            "exchanges_archived": self.exchanges_archived,
            "summaries_stored": self.summaries_stored,
            "recallable_before": self.recallable_before,
            "recallable_after": self.recallable_after,
            "sessions": [
                {
                    "session_id": s.session_id,
                    "exchanges": s.exchanges,
                    "summary_id": s.summary_id,
                    "archived": s.archived,
                    "model_calls": s.model_calls,
                    "error": s.error,
                }
                for s in self.sessions
            ],
            "model": {
                "calls": self.cost.calls,
                "prompt_tokens": self.cost.prompt_tokens,
                "completion_tokens": self.cost.completion_tokens,
                "seconds": round(self.cost.seconds, 3),
                "invalid_replies": self.cost.invalid_replies,
            },
            "stopped": self.stopped,
        }


def compress(
    service: MemoryService,
    model: ChatModel | None,
    *,
    older_than: timedelta | str,
    namespace: str | None = None,
    session_id: str | None = None,
    dry_run: bool = False,
    budget: int = PROMPT_BUDGET,
    on_session: Callable[[SessionCompression], None] | None = None,
) -> CompressReport:
    """Summarise each session's exchanges older than `older_than` into one summary and archive them, oldest
    session first (only `session_id` if given); dry_run: report what would be compressed, call nothing.
    on_session: told of each session as it is done (progress)."""
    age = clean_duration(older_than, "older than")
    ns = clean_name(namespace if namespace is not None else service.settings.namespace, "namespace")
    only = clean_name(session_id, "session") if session_id is not None else None
    if budget < 500:  # smaller prompts would cut the texts into scraps
        raise InputError(f"the prompt budget must be at least 500 characters, not {budget}.")
    if model is None and not dry_run:
        raise InputError("compress needs a chat model (or dry_run=True).")
    now = datetime.now(UTC)
    # An age reaching past memagent's earliest date: no memory is that old.
    cutoff = now - age if age < now - MIN_DATE else MIN_DATE
    with service.unit(ns) as store:
        before = _recallable(store, ns)
        old = store.archive.old_sessions(ns, cutoff, only)
    report = CompressReport(ns, dry_run, [], before, before)
    if dry_run:
        report.sessions = [SessionCompression(s.session_id, s.exchanges) for s in old]
        report.recallable_after = before - report.exchanges_archived + len(old)  # foreseen
        return report
    assert model is not None
    failures = 0
    for done, session in enumerate(old, start=1):
        outcome = _compress_session(service, model, ns, session.session_id, cutoff, report.cost, budget)
        report.sessions.append(outcome)
        if on_session is not None:
            on_session(outcome)
        failures = failures + 1 if outcome.provider_failed else 0
        if failures >= STOP_AFTER_FAILURES and done < len(old):
            left = len(old) - done
            report.stopped = (
                f"the chat or embeddings provider failed for {failures} sessions in a row; "
                f"{wording.count(left, 'more session')} left as {'it is' if left == 1 else 'they are'} "
                "(run compress again)."
            )
            break
    with service.unit(ns) as store:
        report.recallable_after = _recallable(store, ns)
    return report


def _recallable(store: Store, namespace: str) -> int:
    return store.memories.count(Scope(namespace, view=View()))


def _compress_session(
    service: MemoryService,
    model: ChatModel,
    namespace: str,
    session_id: str,
    cutoff: datetime,
    cost: ModelCost,
    budget: int,
) -> SessionCompression:
    """One session: summarise, embed, then store, link, archive and record in one transaction."""
    with service.unit(namespace) as store:
        exchanges = store.archive.old_exchanges(namespace, session_id, cutoff)
    if not exchanges:  # another run compressed them since the sessions were listed
        return SessionCompression(session_id, 0)
    ids = [memory.id for memory in exchanges]
    calls_before = cost.calls

    def left(error: str, *, provider: bool = False) -> SessionCompression:
        return SessionCompression(
            session_id, len(ids), model_calls=cost.calls - calls_before, error=error, provider_failed=provider
        )

    try:
        summary = summarise(model, exchanges, cost, budget)
        with service.unit() as store:  # fail fast on a model mismatch, before embedding
            service.check_embedding_space(store, claim=False)
        embedder = service.embedder
        vector = embedder.embed([summary])[0]
        with service.unit(namespace) as store:
            store.lifecycle.lock_namespace(namespace)
            if store.archive.lock_unarchived(ids) != set(ids):
                return left("another compress archived some of these exchanges meanwhile; left to it.")
            service.check_embedding_space(store, claim=True)
            if service.embedder is not embedder:  # the database moved to another model meanwhile
                raise ProviderError("the embedding model changed during compress; run it again.")
            memory = NewMemory(
                namespace=namespace,
                session_id=session_id,
                content=summary,
                embedding=vector,
                embedding_model=embedder.model,
                metadata={"compressed": len(ids), "from": exchanges[0].created_at.isoformat()},
                created_at=exchanges[-1].created_at,  # the newest: its date in prompts is the conversation's
                kind="summary",
                importance=max(m.importance for m in exchanges),
            )
            [(summary_id, created)] = store.memories.add_many([memory])
            again = 0
            while not created:  # word for word a memory already there (another session's summary, too):
                again += 1  # this session's summary is its own memory, so mark it as this session's
                if again > 20:
                    raise InputError(f"the summary of session {session_id!r} is held as 20 memories already.")
                span = f"{exchanges[0].created_at:%Y-%m-%d} to {exchanges[-1].created_at:%Y-%m-%d}"
                mark = f"session {session_id}, {span}" + (f", {again}" if again > 1 else "")
                memory = replace(memory, content=f"{summary} ({mark})")
                [(summary_id, created)] = store.memories.add_many([memory])
            store.memories.link(namespace, [(summary_id, ids)])
            archived = store.archive.archive(namespace, ids, into=summary_id)
            calls = cost.calls - calls_before
            details = {"sources": len(ids), "session": session_id, "model_calls": calls}
            store.lifecycle.record(namespace, summary_id, "summarize", details=details)
    except ProviderError as exc:  # the chat model's or the embedder's, or its output (ModelOutputError)
        return left(exc.message, provider=not isinstance(exc, ModelOutputError))
    except InputError as exc:
        return left(exc.message)
    return SessionCompression(session_id, len(ids), summary_id, created, archived, calls)


def summarise(
    model: ChatModel, exchanges: Sequence[MemoryRecord], cost: ModelCost, budget: int = PROMPT_BUDGET
) -> str:
    """One summary of a session's exchanges (oldest first); when they do not fit one prompt of `budget`
    characters, each part is summarised and the parts' summaries merged, as often as it takes."""
    records = exchange_records(exchanges, piece=max(1, budget // 2))
    level = [
        part_record(chunk[0]["date"], chunk[-1]["date"], _ask(model, chunk, cost, parts=False))
        for chunk in _chunks(records, budget)
    ]
    while len(level) > 1:
        groups = _chunks(level, budget)
        if len(groups) == len(level):  # each summary fills a prompt alone: merge two at a time, so it ends
            groups = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [
            part_record(group[0]["from"], group[-1]["to"], _ask(model, group, cost, parts=True))
            for group in groups
        ]
    return str(level[0]["summary"])


def _ask(model: ChatModel, records: list[dict[str, Any]], cost: ModelCost, *, parts: bool) -> str:
    return ask_json(model, summary_messages(records, parts=parts), SUMMARY_SCHEMA, parse_summary, cost)


def _chunks(records: list[dict[str, Any]], budget: int) -> list[list[dict[str, Any]]]:
    """Consecutive records in groups of at most `budget` characters (a larger record alone), in order."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for record in records:
        cost = record_size(record)
        if current and size + cost > budget:
            chunks.append(current)
            current, size = [], 0
        current.append(record)
        size += cost
    if current:
        chunks.append(current)
    return chunks
