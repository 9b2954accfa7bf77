"""Learning: facts extracted from stored exchanges by the chat model, consolidated with the facts held.

Per exchange: the model lists its facts (validated JSON, asked once more when invalid); each fact is
embedded once and the nearest current facts of the namespace are shown to the model, which decides add,
update, invalidate or noop. The decisions are applied in one transaction under the namespace's learning
lock, with one memory_events row per change; nothing is overwritten or deleted (an old fact gets an end of
validity and a pointer to what replaced it). An exchange whose learning fails keeps extracted_at NULL: the
next `memagent extract` takes it again, and nothing it said is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from memagent.agent.learning_prompts import (
    CONSOLIDATE_SCHEMA,
    EXTRACT_SCHEMA,
    Decision,
    Fact,
    Shown,
    consolidate_messages,
    extract_messages,
    parse_decisions,
    parse_facts,
)
from memagent.errors import DatabaseError, DatabaseUnavailableError, InputError, ProviderError
from memagent.providers.chat import ChatModel
from memagent.records import LearnReport, MemoryRecord
from memagent.store.lifecycle import LifecycleRepository
from memagent.store.scope import Scope, View
from memagent.usecases.fact_writes import Vectors, distinct, store_facts
from memagent.usecases.model_json import ask_json
from memagent.usecases.service import MemoryService
from memagent.validation import whole

NEIGHBOURS = 5  # current facts shown to the model per new fact
MAX_SHOWN = 20  # and at most this many in all
ATTEMPTS = 3  # consolidations of one exchange when the facts changed under it (another run)


@dataclass(frozen=True)
class _Plan:
    """One decision as it will be applied: the text to store (None for noop) and its importance."""

    decision: Decision
    text: str | None
    importance: float


class _Stale(Exception):
    """The facts changed after the model saw them: look again."""


class Learner:
    """Extraction and consolidation over a MemoryService (its database, embedder and settings)."""

    def __init__(self, service: MemoryService, model: ChatModel) -> None:
        self.service = service
        self.model = model

    def extract(
        self,
        *,
        namespace: str | None = None,
        ids: Sequence[int] | None = None,
        limit: int = 100,
        on_progress: Callable[[int], None] | None = None,
    ) -> LearnReport:
        """Learn the facts of the namespace's exchanges not yet extracted (oldest first, at most `limit`;
        only `ids` if given). Failures (the provider, the model's reply) are reported per
        exchange, never raised, except an unreachable database."""
        limit = whole(limit, "limit")
        if not 1 <= limit <= 100_000:
            raise InputError(f"limit must be between 1 and 100000, not {limit}.")
        space = self.service.scope(namespace).namespace
        report = LearnReport()
        with self.service.unit(space) as store:
            exchanges = store.lifecycle.unextracted(space, limit=limit, ids=ids)
        for exchange in exchanges:
            try:
                self._learn(exchange, report)
            except DatabaseUnavailableError:
                raise  # nothing more can be done now: the caller says so
            except (ProviderError, InputError, DatabaseError) as exc:
                # This exchange waits for a later run; the others go on. (A reply the database refuses,
                # e.g. text it cannot store, is the model's failure as much as invalid JSON is.)
                report.failed.append((exchange.id, exc.message))
                self._note_failure(exchange, exc.message)
            if on_progress is not None:
                on_progress(1)
        if ids is None:  # a whole run says how many are left; a chat turn's own exchange need not count them
            with self.service.unit(space) as store:
                report.waiting = store.lifecycle.unextracted_count(space)
        return report

    def _note_failure(self, exchange: MemoryRecord, error: str) -> None:
        """Why the exchange waits, in its history — unless it is gone (forgotten, purged) meanwhile."""
        try:
            with self.service.unit(exchange.namespace) as store:
                store.lifecycle.record(exchange.namespace, exchange.id, "extract", details={"error": error})
        except DatabaseUnavailableError:
            raise
        except DatabaseError:
            pass  # the exchange was deleted while its model call ran: nothing waits

    def _learn(self, exchange: MemoryRecord, report: LearnReport) -> None:
        facts = distinct(
            ask_json(self.model, extract_messages(exchange), EXTRACT_SCHEMA, parse_facts, report.cost)
        )
        vectors = Vectors(self.service)
        vectors.add([fact.text for fact in facts])
        for _ in range(ATTEMPTS):
            version = None
            if facts:  # with no facts there is nothing to decide, and nothing to be stale about
                with self.service.unit(exchange.namespace) as store:
                    version = store.lifecycle.facts_version(exchange.namespace)
            shown = self._nearest(exchange.namespace, [vectors[fact.text] for fact in facts])
            plans, refused = self._decide(exchange, facts, shown, report)
            vectors.add([plan.text for plan in plans if plan.text is not None])
            try:
                self._apply(exchange, plans, vectors, version, report)
            except _Stale:
                continue
            report.refused += refused
            return
        raise ProviderError(  # not the provider's fault, but the same remedy: leave it for a later run
            f"the namespace's facts kept changing while exchange {exchange.id} was consolidated "
            f"({ATTEMPTS} tries)"
        )

    def _nearest(self, namespace: str, vectors: Sequence[Any]) -> dict[int, Shown]:
        """The current facts nearest to each new fact (together at most MAX_SHOWN), by id."""
        scope = Scope(namespace=namespace, view=View(kinds=("fact",)))
        shown: dict[int, Shown] = {}
        for vector in vectors:
            for memory in self.service.similar(vector, scope, NEIGHBOURS):
                if len(shown) < MAX_SHOWN:
                    shown.setdefault(memory.id, Shown(memory.id, memory.content, memory.created_at))
        return shown

    def _decide(
        self, exchange: MemoryRecord, facts: list[Fact], shown: dict[int, Shown], report: LearnReport
    ) -> tuple[list[_Plan], int]:
        """One plan per new fact — the model's decision when it is valid, an add otherwise — and how many
        decisions were refused: one naming a fact that was not shown (an invented id, another namespace's,
        an exchange's), or ending a fact another new fact already ends."""
        if not facts:
            return [], 0
        decided: dict[int, Decision] = {}
        if shown:  # with nothing to compare with, every fact is new: no call needed
            messages = consolidate_messages(
                [fact.text for fact in facts], list(shown.values()), exchange.created_at
            )
            for decision in ask_json(self.model, messages, CONSOLIDATE_SCHEMA, parse_decisions, report.cost):
                if 1 <= decision.new <= len(facts):
                    decided.setdefault(decision.new, decision)
        plans: list[_Plan] = []
        refused, ended = 0, set()
        for index, fact in enumerate(facts, start=1):
            decision = decided.get(index) or Decision(new=index, action="add", reason="new information")
            if decision.action == "add":
                decision = decision.model_copy(update={"target": None})  # an add touches nothing else
            elif decision.target not in shown or (decision.action != "noop" and decision.target in ended):
                refused += decision.target is not None
                why = "not shown" if decision.target not in shown else "another new fact replaces it"
                reason = f"refused {decision.action} of fact {decision.target}: {why}"
                decision = Decision(new=index, action="add", reason=reason)
            elif decision.action != "noop":
                ended.add(decision.target)
            text = fact.text
            if decision.action == "update" and decision.text:
                text = decision.text
            plans.append(_Plan(decision, None if decision.action == "noop" else text, fact.importance))
        return plans, refused

    def _apply(
        self,
        exchange: MemoryRecord,
        plans: list[_Plan],
        vectors: Vectors,
        version: Any,
        report: LearnReport,
    ) -> None:
        """The decisions, in one transaction under the namespace's learning lock."""
        space = exchange.namespace
        with self.service.unit(space) as store:
            life = store.lifecycle
            life.lock_namespace(space)
            if not life.claim([exchange.id]):
                report.skipped += 1  # another run learnt it meanwhile
                return
            if plans and life.facts_version(space) != version:
                raise _Stale
            targets = {plan.decision.target for plan in plans if plan.decision.target is not None}
            holds_from = life.current_facts(sorted(targets))
            if set(holds_from) != targets:
                raise _Stale
            self.service.check_embedding_space(store, claim=True)
            storing = [plan for plan in plans if plan.text is not None]
            texts = [(str(plan.text), plan.importance) for plan in storing]
            stored = store_facts(store, exchange, texts, vectors, self.service.embedder.model)
            fact_ids = {plan.decision.new: found for plan, found in zip(storing, stored, strict=True)}
            links: list[tuple[int, list[int]]] = []
            held: list[tuple[int, str | None]] = []  # facts already held that this exchange says again
            ended: dict[int, int] = {}  # fact ended by this exchange -> what replaced it
            for plan in plans:
                decision = plan.decision
                reason = decision.reason or None
                if decision.action == "noop":
                    assert decision.target is not None
                    held.append((decision.target, reason))
                    continue
                new_id, fresh = fact_ids[decision.new]
                if fresh:
                    links.append((new_id, [exchange.id]))
                    if new_id not in report.added:
                        report.added.append(new_id)
                    life.record(space, new_id, "add", related_id=exchange.id, reason=reason)
                else:
                    held.append((new_id, "the same fact is already held"))
                target = decision.target
                if decision.action in ("update", "invalidate") and target is not None and target != new_id:
                    if new_id in ended:  # its replacement was itself ended just now: no loop of ends
                        report.refused += 1
                        continue
                    if exchange.created_at < holds_from[target]:
                        # Said before the fact it would end (an exchange learnt late: imported, dated, or
                        # waiting behind a failure): the later fact stays; this one held until the first of
                        # the later fact's chain said after it. A fact already held, or one another new fact
                        # is replacing now, is not this exchange's to end: refused.
                        if not fresh or new_id in ended.values():
                            report.refused += 1
                            continue
                        ended[new_id] = self._older(life, exchange, plan, new_id, target)
                        if decision.action == "update":
                            report.updated += 1
                        else:
                            report.invalidated += 1
                        continue
                    life.end(target, replaced_by=new_id, invalid_at=exchange.created_at)
                    life.record(space, target, decision.action, related_id=new_id, reason=reason)
                    ended[target] = new_id
                    if decision.action == "update":
                        report.updated += 1
                    else:
                        report.invalidated += 1
            for fact_id, reason in held:
                # Already held: the fact gains this exchange as a source, and nothing else changes; one
                # this exchange ended passes the source on to what replaced it.
                while fact_id in ended:
                    fact_id = ended[fact_id]
                links.append((fact_id, [exchange.id]))
                life.record(space, fact_id, "noop", related_id=exchange.id, reason=reason)
                report.unchanged += 1
            store.memories.link(space, [(m, s) for m, s in links if m != exchange.id])
            life.record(
                space, exchange.id, "extract", details={"facts": len(plans), "model": self.model.model}
            )
            life.mark_extracted([exchange.id])
        report.exchanges += 1

    @staticmethod
    def _older(
        life: LifecycleRepository, exchange: MemoryRecord, plan: _Plan, new_id: int, target: int
    ) -> int:
        """A new fact said before the current one it would replace: ended at once, replaced by the first fact
        of the current one's chain said after it (held from when it was said until that one holds); the
        current fact untouched. Returns what replaced it."""
        successor, since = life.first_after(target, exchange.created_at)
        when = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        reason = f"said before fact {successor}, which holds from {when}: fact {target} stays current"
        if plan.decision.reason:
            reason += f" (the model: {plan.decision.reason})"
        life.end(new_id, replaced_by=successor, invalid_at=since)
        life.record(exchange.namespace, new_id, plan.decision.action, related_id=successor, reason=reason)
        return successor
