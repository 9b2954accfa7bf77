"""MemoryService: remember, recall, recent, count, purge, pending, backfill; one unit of work per call."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from memagent.config import Settings
from memagent.errors import InputError, ProviderError
from memagent.providers.embeddings import Embedder
from memagent.records import MemoryRecord, RecallResult, RememberResult
from memagent.store.deferred import Indexing
from memagent.store.scope import Scope
from memagent.store.search import SearchMode
from memagent.store.unit import UnitOfWork
from memagent.usecases.checked import Ask, SpaceChecked, settle
from memagent.usecases.known_space import KnownSpace
from memagent.usecases.views import clean_view, learned_kinds, recall_limits, refuse_other_kinds
from memagent.validation import ALL_NAMESPACES, clean_date, clean_metadata, clean_name, clean_text, whole

# Memories embedded per batch by backfill, and at most per automatic catch-up after a successful call.
BACKFILL_BATCH = 64


class MemoryService(SpaceChecked):
    """Long-term memory over one database and one embedder; each call is one transaction. Results carry
    everything a caller needs to know about the call (why recall degraded, why a memory's embedding is
    pending): the service keeps no per-call state, so threads may share it."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        embedder: Embedder,
        settings: Settings,
        *,
        unit: UnitOfWork | None = None,
        rechoose: Callable[[tuple[str, int]], Embedder | None] | None = None,
    ) -> None:
        """rechoose: the embedder for another embedding space, when the settings leave the choice to
        memagent (a long-lived process outliving a `memagent reembed` run elsewhere follows the database)."""
        self.unit = unit or UnitOfWork(sessions)
        self._rechoose = rechoose
        self.embedder = embedder
        self.settings = settings
        self.known = KnownSpace()
        self.indexing = Indexing(self.unit)  # memories stored in one statement, into the HNSW graph after

    def scope(
        self, namespace: str | None, session_id: str | None = None, before: datetime | None = None
    ) -> Scope:
        """The scope a call names (checked), in the configured namespace unless it names one."""
        return Scope(
            namespace=clean_name(
                namespace if namespace is not None else self.settings.namespace, "namespace"
            ),
            session_id=clean_name(session_id, "session") if session_id is not None else None,
            before=clean_date(before, "before date") if before is not None else None,
        )

    def _catch_up(self) -> None:
        """After a call that reached the provider, now and then (KnownSpace): catch up on what waits."""
        if not self.known.catch_up_due():
            return
        self.indexing.sweep()  # memories a killed process left out of the HNSW graph
        if self.backfill(limit=BACKFILL_BATCH, quiet=True) >= BACKFILL_BATCH:
            self.known.catch_up_soon()  # more wait: go on at the next call

    # -- verbs -----------------------------------------------------------------------------------------

    def remember(
        self,
        text: str,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> RememberResult:
        """Embed and store one text; identical text already in the namespace is not stored twice."""
        return self.remember_many(
            [text], namespace=namespace, session_id=session_id, metadata=metadata, created_at=created_at
        )[0]

    def remember_many(
        self,
        texts: list[str],
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
        kind: str = "exchange",
        importance: Sequence[float] | None = None,
        sources: Sequence[Sequence[int]] | None = None,
    ) -> list[RememberResult]:
        """Embed texts in batches and store them in one transaction.

        kind: exchange (what was said), fact or summary; importance: one 0-1 value per text (default 0.5);
        sources: per text, the ids of the memories of the namespace it came from (a fact's exchanges).
        """
        contents = [clean_text(text) for text in texts]
        learned = learned_kinds(len(contents), kind, importance, sources)
        scope = self.scope(namespace, session_id if session_id is not None else self.settings.session_id)
        assert scope.session_id is not None
        meta = clean_metadata(metadata)
        if created_at is not None:
            created_at = clean_date(created_at, "created_at")  # a naive date means the caller's local time
        known = self.known.get(self.embedder) is not None
        embedder = self.embedder
        if not known:  # fail fast on a model mismatch, before any embedding work
            with self.unit() as store:
                self.check_embedding_space(store, claim=False)
        memories, pending_reason = self._embedded(contents, scope, meta, created_at, learned)
        plain = kind == "exchange" and importance is None and sources is None
        stored = self._store_one(memories[0]) if known and plain and len(memories) == 1 else None
        if stored is None:
            if known:  # the space may have changed since it was verified: check before writing
                with self.unit() as store:
                    self.check_embedding_space(store, claim=False)
                if self.embedder is not embedder:  # following the database to another model
                    memories, pending_reason = self._embedded(contents, scope, meta, created_at, learned)
            with self.unit(scope.namespace) as store:
                self.check_embedding_space(store, claim=True)  # known now: the next store in one statement
                self.known.set((self.embedder.model, self.embedder.dim, store.space.index_kind()))
                if kind != "exchange":  # in order with learning's writes: its lock before any row
                    store.lifecycle.lock_namespace(scope.namespace)
                stored = store.memories.add_many(memories)
                if not plain:
                    refuse_other_kinds(store.memories.kinds_of([i for i, new in stored if not new]), kind)
                if sources is not None:
                    links = [(memory_id, ids) for (memory_id, _), ids in zip(stored, sources, strict=True)]
                    store.memories.link(scope.namespace, links)
                if kind != "exchange":  # a fact or summary stored by the caller: a change, recorded
                    added = [memory_id for memory_id, new in stored if new]
                    store.lifecycle.record_adds(scope.namespace, added, "stored directly")
        if pending_reason is None:
            self._catch_up()  # the provider answers: catch up on old ones
        else:
            self.known.catch_up_soon()
        covered = [self.embedder.covered(content) for content in contents]
        return [
            RememberResult(
                new_id,
                created,
                scope.namespace,
                scope.session_id,
                pending_reason=pending_reason,
                embedded_chars=reads if reads < len(content) else None,
            )
            for (new_id, created), content, reads in zip(stored, contents, covered, strict=True)
        ]

    def recall(
        self,
        query: str,
        *,
        k: int | None = None,
        namespace: str | None = None,
        session_id: str | None = None,
        max_distance: float | None = None,
        mode: SearchMode | None = None,
        ef_search: int | None = None,
        kinds: Sequence[str] | None = None,
        as_of: datetime | None = None,
        include_archived: bool = False,
        text_floor: float | None = None,
    ) -> RecallResult:
        """The best memories for the query, best first; k rows whenever the scope holds k (fewer only when
        a fact stands for an exchange it came from and nothing else is left to take its place).

        By default it searches what memagent believes now (no expired fact, no archived exchange); kinds
        (exchange, fact, summary), as_of (what it believed then) and include_archived change that.
        mode: hybrid (BM25 + vector, fused), vector or text; default MEMAGENT_RECALL_MODE. When the query
        cannot be embedded (provider down) hybrid recall falls back to full-text search and says why in the
        result's `degraded`; vector mode raises the provider's error. ef_search: HNSW candidate list size
        (higher: better recall, slower); default MEMAGENT_EF_SEARCH, raised to k (or the hybrid depth).
        text_floor: the hybrid text side's floor (memagent.store.text_floor); 0 for a caller that filters
        the results afterwards (item search), so that a memory it drops cannot set the floor.
        """
        query = clean_text(query, "query")
        k, max_distance, ef_search = recall_limits(self.settings, k, max_distance, ef_search)
        view = clean_view(kinds, as_of, include_archived=include_archived)
        scope = replace(self.scope(namespace, session_id), view=view)
        space = self._verified()
        if space is None:
            return RecallResult([])  # nothing was ever stored: no need to load or call the model
        mode = mode or self.settings.recall_mode
        if mode not in ("hybrid", "vector", "text"):
            raise InputError(f"mode must be hybrid, vector or text, not {mode!r}.")
        degraded: str | None = None
        vector: Any = None
        ask = Ask(query, scope, k, max_distance, ef_search, mode, text_floor)
        # Hybrid's text side needs no embedding: it runs (on a connection of its own) while the query is
        # embedded and the vector side found.
        text_side = self._text_side(ask, space) if mode == "hybrid" else None
        try:
            try:
                vector = self.embedder.embed([query])[0]
            except ProviderError as exc:
                if mode == "vector":
                    raise
                # Full-text recall still works without the provider; say so rather than fail the turn.
                degraded, ask = exc.message, replace(ask, mode="text")
            else:
                self._catch_up()
            found = self._search(ask, vector, space, text_side if ask.mode == "hybrid" else None)
        finally:
            settle(text_side)  # (unused when the query could not be embedded, or on an error)
        return RecallResult(found, degraded, ask.mode)

    def pending(self, *, namespace: str | None = None, all_namespaces: bool = False) -> int:
        """How many memories wait for their embedding (in the namespace, or in every namespace)."""
        scope = None if all_namespaces else self.scope(namespace, None).namespace
        with self.unit(scope or ALL_NAMESPACES) as store:
            return store.memories.pending_count(scope)

    def backfill(
        self,
        *,
        limit: int | None = None,
        batch: int = BACKFILL_BATCH,
        quiet: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Embed memories stored while the provider was failing; returns how many were embedded. In batches,
        each committed (it can stop and resume); quiet: stop at the first provider error, not raise it."""
        done = 0
        while limit is None or done < limit:
            size = batch if limit is None else min(batch, limit - done)
            with self.unit(ALL_NAMESPACES) as store:
                # Every remember and recall comes here: the common case (nothing pending) is one query.
                waiting = store.memories.pending_batch(size)
                if not waiting:
                    return done
                self.check_embedding_space(store, claim=False)  # never embed with the wrong model
            try:
                vectors = self.embedder.embed([content for _, content in waiting])
            except ProviderError:
                if quiet:
                    return done
                raise
            with self.unit(ALL_NAMESPACES) as store:
                self.check_embedding_space(store, claim=False)
                filled = store.memories.set_embeddings(
                    [(memory_id, vector) for (memory_id, _), vector in zip(waiting, vectors, strict=True)],
                    self.embedder.model,
                )
            done += len(waiting)
            if on_progress is not None:
                on_progress(filled)
            if len(waiting) < size:
                return done
        return done

    def recent(
        self, *, limit: int = 5, namespace: str | None = None, session_id: str | None = None
    ) -> list[MemoryRecord]:
        """The newest memories in scope, newest first."""
        limit = whole(limit, "limit")
        if not 1 <= limit <= 10000:
            raise InputError(f"limit must be between 1 and 10000, not {limit}.")
        scope = self.scope(namespace, session_id)
        with self.unit(scope.namespace) as store:
            return store.memories.recent(scope, limit=limit)

    def count(
        self,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        before: datetime | None = None,
        archived: bool = False,
        unlearnt: bool = False,
    ) -> int:
        """How many memories are in scope (archived: only those compressed into a summary; unlearnt: of
        those, the exchanges whose facts were never extracted)."""
        scope = self.scope(namespace, session_id, before)
        with self.unit(scope.namespace) as store:
            if archived:
                return store.archive.archived_count(scope, unlearnt=unlearnt)
            return store.memories.count(scope)

    def purge(
        self,
        *,
        namespace: str | None = None,
        session_id: str | None = None,
        before: datetime | None = None,
        archived: bool = False,
    ) -> int:
        """Delete the memories in scope (one namespace; optionally one session, older than a date, archived:
        only those compressed into a summary)."""
        scope = self.scope(namespace, session_id, before)
        with self.unit(scope.namespace) as store:
            return store.archive.purge_archived(scope) if archived else store.memories.purge(scope)
