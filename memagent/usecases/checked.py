"""MemoryService's base: the embedding-space check, and the one-round-trip recall and store that rely on it.

A service verifies the database's embedding space once (memagent.usecases.known_space keeps it); afterwards
a recall is one checked statement (the space comes back with the rows; a hybrid recall's text side runs
beside it, on another connection: _sides_at_once) and storing one memory one guarded INSERT (written only if
the space still matches). Anything unexpected goes back to the full check.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from memagent.config import Settings
from memagent.errors import DatabaseError, DatabaseUnavailableError, EmbeddingMismatchError, ProviderError
from memagent.providers.embeddings import Embedder
from memagent.records import RecalledMemory
from memagent.store import hnsw
from memagent.store.deferred import Indexing
from memagent.store.memories import NewMemory, add_one_guarded
from memagent.store.scope import Scope
from memagent.store.search import RecallStatement, SearchMode, SpaceRow, recall_statement
from memagent.store.unit import Store, UnitOfWork
from memagent.usecases.embedding_space import check_space
from memagent.usecases.known_space import KnownSpace


def settle(aside: Future[list[Any]] | None) -> None:
    """Wait for a text side the recall will not use (its error included), so that none outlives its recall
    (a service closed after it must not find one still opening a connection)."""
    if aside is not None:
        with suppress(Exception):  # its rows and its error are not wanted
            aside.result()


@dataclass(frozen=True)
class Ask:
    """What one recall asks for, checked (MemoryService.recall; `similar`)."""

    query: str
    scope: Scope
    k: int
    max_distance: float | None
    ef: int
    mode: SearchMode
    text_floor: float | None = None


class SpaceChecked:
    """The embedding space check and the paths that skip it while it holds (MemoryService is one)."""

    unit: UnitOfWork
    embedder: Embedder
    settings: Settings
    known: KnownSpace
    indexing: Indexing
    _rechoose: Callable[[tuple[str, int]], Embedder | None] | None

    def check_embedding_space(self, store: Store, *, claim: bool) -> bool:
        """Refuse a model the database was not built for; returns False if nothing was ever stored."""
        try:
            return check_space(store, self.embedder, claim=claim)
        except EmbeddingMismatchError:
            space = store.space.get()
            other = self._rechoose(space) if self._rechoose is not None and space is not None else None
            if other is None or (other.model, other.dim) != space:
                raise
            self.embedder = other  # the database moved to another model (a reembed elsewhere): follow it
            return True

    def _verified(self) -> SpaceRow | None:
        """The embedding space, verified against the embedder: known from an earlier call, or checked in full
        now (None: nothing was ever stored)."""
        space = self.known.get(self.embedder)
        if space is None:
            with self.unit() as store:
                if not self.check_embedding_space(store, claim=False):
                    return None
                space = (self.embedder.model, self.embedder.dim, store.space.index_kind())
            self.known.set(space)
        return space

    def _statement(self, ask: Ask, vector: Any, space: SpaceRow) -> RecallStatement:
        """The checked statement of one recall, with this service's ranking settings."""
        half_life = self.settings.recency_half_life_days
        return recall_statement(
            vector,
            scope=ask.scope,
            k=ask.k,
            max_distance=ask.max_distance,
            ef_search=ask.ef,
            mode=ask.mode,
            query_text=ask.query,
            depth=self.settings.hybrid_depth,
            text_weight=self.settings.hybrid_text_weight,
            recency_half_life=timedelta(days=half_life) if half_life else None,
            importance_weight=self.settings.importance_weight,
            index=space[2],
            checked=True,
            text_floor=ask.text_floor,
        )

    def _text_side(self, ask: Ask, space: SpaceRow) -> Future[list[Any]] | None:
        """A hybrid recall's text side, started on a connection of its own (it needs no embedding:
        MemoryService starts it before embedding the query); None when it cannot run aside
        (UnitOfWork.run_aside)."""
        statement = self._statement(ask, None, space)
        assert statement.split is not None
        return self.unit.run_aside(
            ask.scope.namespace, statement.split.text_sql, statement.params, statement.settings
        )

    def _search(
        self, ask: Ask, vector: Any, space: SpaceRow, text_side: Future[list[Any]] | None = None
    ) -> list[RecalledMemory]:
        """One checked statement, one round trip: the rows and the embedding space in force with them. Hybrid,
        when it can: its text side on another connection while this one runs the rest (_sides_at_once).

        If the space is not the one verified (a reembed or another model meanwhile) or the statement fails
        (a dropped connection, a retyped column), check in full (which may follow the database to another
        model, or refuse a mismatch) and try once more, in one statement, embedding the query again if the
        embedder changed. text_side: the text side already started (_text_side).
        """
        namespace = ask.scope.namespace
        for attempt in (1, 2):
            statement = self._statement(ask, vector, space)
            try:
                if attempt == 1 and statement.split is not None and vector is not None:
                    rows = self._sides_at_once(statement, namespace, text_side)
                else:
                    rows = self._run(namespace, statement)
            except DatabaseError:
                if attempt == 2:
                    raise
            else:
                seen = statement.space(rows)
                if attempt == 2 or (seen is not None and seen[:2] == space[:2]):
                    self.known.set(seen)  # the index kind may have changed: nothing else to do
                    return statement.results(rows)
            self.known.set(None)
            embedder = self.embedder
            verified = self._verified()
            if verified is None:
                return []
            space = verified
            if self.embedder is not embedder and vector is not None:
                vector = self.embedder.embed([ask.query])[0]
        raise AssertionError("unreachable")

    def _sides_at_once(
        self, statement: RecallStatement, namespace: str, text_side: Future[list[Any]] | None
    ) -> list[Any]:
        """A hybrid recall's rows: its text side on a connection of its own (text_side, or started now) while
        this thread finds the vector side, then both fused in a third statement; the vector side and the
        fusion in one statement when the text side is already done (it started before the query was
        embedded, and a real embedder takes longer); all in one statement when the text side cannot run
        aside. No connection is held while waiting for the text side."""
        split = statement.split
        assert split is not None
        aside = text_side or self.unit.run_aside(
            namespace, split.text_sql, statement.params, statement.settings
        )
        if aside is None:
            return self._run(namespace, statement)
        try:
            if aside.done():
                return self._run(namespace, statement.with_text(aside.result()))
            vector_rows = self.unit.run(
                namespace,
                split.vector_sql,
                statement.params,
                statement.settings,
                prepare=split.vector_prepare,
                keyed=split.vector_prepare,
            )
            fused = statement.fused(vector_rows, aside.result())
        finally:
            settle(aside)  # (done already, unless this failed or was interrupted: it ends with the recall)
        return self._run(namespace, fused)

    def _run(self, namespace: str, statement: RecallStatement) -> list[Any]:
        """One recall statement as a unit of work of its own (prepared when it says so)."""
        prepare, keyed = statement.prepare, statement.keyed
        return self.unit.run(
            namespace, statement.sql, statement.params, statement.settings, prepare=prepare, keyed=keyed
        )

    def _embedded(
        self,
        contents: list[str],
        scope: Scope,
        meta: dict[str, Any],
        created_at: datetime | None,
        learned: list[tuple[str, float]],
    ) -> tuple[list[NewMemory], str | None]:
        """The memories to store, embedded; when the provider fails, pending, with its reason."""
        vectors: Any
        pending_reason: str | None = None
        try:
            vectors = self.embedder.embed(contents)
        except ProviderError as exc:
            # Nothing is lost: store the text now, embed it later (backfill).
            pending_reason = exc.message
            vectors = [None] * len(contents)
        assert scope.session_id is not None
        return [
            NewMemory(
                namespace=scope.namespace,
                session_id=scope.session_id,
                content=content,
                embedding=vector,
                embedding_model=self.embedder.model,
                metadata=meta,
                created_at=created_at,
                kind=kind,
                importance=weight,
            )
            for content, vector, (kind, weight) in zip(contents, vectors, learned, strict=True)
        ], pending_reason

    def similar(self, vector: Any, scope: Scope, k: int) -> list[RecalledMemory]:
        """The k memories of the scope nearest to an embedding already computed (vector recall, checked)."""
        space = self._verified()
        if space is None:
            return []
        ef = max(self.settings.ef_search, k)
        return self._search(Ask("", scope, k, None, ef, "vector"), vector, space)

    def _store_one(self, memory: NewMemory) -> list[tuple[int, bool]] | None:
        """Store one memory in one round trip when the embedding space is known and still in force; None:
        take the full path (space unknown or changed, or a race with an identical memory)."""
        space = self.known.get(self.embedder)
        if space is None:
            return None
        # Deferred, unless the index could not take the vector (the INSERT then refuses it, as it always did,
        # rather than a later step failing on it for good).
        vector = memory.embedding
        defer = vector is not None and hnsw.takes(space[2], vector) and self.indexing.defers()
        sql, params = add_one_guarded(memory, self.embedder.dim, space[2], defer=defer)
        try:
            rows = self.unit.run(memory.namespace, sql, params, prepare=True)
        except DatabaseUnavailableError:
            raise
        except DatabaseError:  # e.g. the column retyped to another dimension: the full path says why
            rows = []
        if len(rows) != 1:
            self.known.set(None)
            return None
        created = bool(rows[0][1])
        if defer and created:
            self.indexing.start(memory.namespace)  # into the HNSW graph after the call; found meanwhile
        return [(int(rows[0][0]), created)]
