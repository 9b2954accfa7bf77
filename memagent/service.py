"""MemoryService: the verbs (remember, recall, recent, purge, count), one unit of work per call."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.config import Settings, validate_name
from memagent.db import Database, translate_errors
from memagent.embeddings import Embedder, make_embedder
from memagent.errors import EmbeddingMismatchError, InputError, ProviderError
from memagent.records import MemoryRecord, RecalledMemory, RememberResult
from memagent.repository import MemoryRepository, NewMemory, Scope, SearchMode


def clean_text(text: str, what: str = "text") -> str:
    """Validate a text to embed and store: not empty, no NUL bytes (PostgreSQL text cannot hold them)."""
    if not isinstance(text, str):
        raise InputError(f"the {what} must be a string, not {type(text).__name__}.")
    stripped = text.strip()
    if not stripped:
        raise InputError(f"the {what} is empty.")
    if "\x00" in stripped:
        raise InputError(f"the {what} contains NUL bytes, which PostgreSQL cannot store.")
    return stripped


def clean_name(value: str, what: str) -> str:
    """Validate a namespace or session id, as an InputError."""
    try:
        return validate_name(value, what)
    except ValueError as exc:
        raise InputError(f"invalid {what}: {exc}.") from None


def clean_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metadata must be a JSON object."""
    if not metadata and (metadata is None or isinstance(metadata, Mapping)):
        return {}
    if not isinstance(metadata, Mapping):
        raise InputError("metadata must be a JSON object.")
    try:
        text = json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata is not JSON-serialisable: {exc}.") from None
    if "\\u0000" in text:
        raise InputError("metadata contains NUL characters, which PostgreSQL cannot store.")
    return dict(json.loads(text))


# The role whose transactions row-level security confines to one namespace (revision 0006).
APP_ROLE = "memagent_app"
# Memories embedded per batch by backfill, and at most per automatic catch-up after a successful call.
BACKFILL_BATCH = 64


class MemoryService:
    """Long-term memory over one database and one embedder; each call is one transaction."""

    def __init__(self, sessions: Callable[[], Session], embedder: Embedder, settings: Settings) -> None:
        self._sessions = sessions
        self.embedder = embedder
        self.settings = settings
        self._app_role: bool | None = None  # whether this login may switch to memagent_app (once known)
        # Set by the last recall when the provider failed and full-text recall stood in (the error line).
        self.degraded: str | None = None
        # The provider error of the last remember that stored its memories as pending.
        self.last_provider_error: str | None = None

    @contextmanager
    def unit(self, namespace: str | None = None, *, admin: bool = False) -> Iterator[MemoryRepository]:
        """One transaction: a repository over a new session, committed on success, rolled back on error.

        The transaction sees one namespace: it runs as the role memagent_app under row-level security
        (revision 0006) with memagent.namespace set, so even a query without a namespace filter reads and
        writes that namespace only. namespace '*' opens every namespace (export of all, import, backfill);
        None opens none. admin: schema work (index builds, the re-embedding switch) as the login role.
        """
        session = self._sessions()
        with translate_errors(), session, session.begin():
            if not admin:
                self._isolate(session, namespace)
            yield MemoryRepository(session)
            if not admin and isinstance(session.get_bind(), Connection):
                # Joined to a caller's transaction (tests): LOCAL settings would outlive this unit.
                session.execute(text("SELECT set_config('role', 'none', true)"))

    def _isolate(self, session: Session, namespace: str | None) -> None:
        if self._app_role is None:
            self._app_role = bool(
                session.execute(
                    text(
                        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :role)"
                        " THEN pg_has_role(current_user, :role, 'MEMBER') ELSE false END"
                    ),
                    {"role": APP_ROLE},
                ).scalar_one()
            )
        session.execute(
            text(
                "SELECT set_config('memagent.namespace', :ns, true)"
                + (", set_config('role', :role, true)" if self._app_role else "")
            ),
            {"ns": namespace if namespace is not None else "", "role": APP_ROLE},
        )

    def _scope(self, namespace: str | None, session_id: str | None, before: datetime | None = None) -> Scope:
        return Scope(
            namespace=clean_name(
                namespace if namespace is not None else self.settings.namespace, "namespace"
            ),
            session_id=clean_name(session_id, "session") if session_id is not None else None,
            before=before,
        )

    def check_embedding_space(self, repo: MemoryRepository, *, claim: bool) -> bool:
        """Refuse a model the database was not built for; returns False if nothing was ever stored."""
        model, dim = self.embedder.model, self.embedder.dim
        space = repo.embedding_space()
        if space is None:
            column_dim = repo.column_dimension()
            if column_dim is not None and column_dim != dim:
                raise EmbeddingMismatchError(
                    f"this database was set up for {column_dim}-dimension vectors, but embedding model "
                    f"{model} makes {dim}-dimension vectors.",
                    hint="Configure a model of that dimension, or use a fresh database.",
                )
            if not claim:
                return False
            space = repo.claim_embedding_space(model, dim)
        if space != (model, dim):
            raise EmbeddingMismatchError(
                f"this database holds embeddings from {space[0]} ({space[1]} dimensions), but the configured "
                f"embedding model is {model} ({dim} dimensions).",
                hint=f"Set MEMAGENT_EMBEDDING_MODEL={space[0]} (and its provider), or use another database.",
            )
        return True

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
    ) -> list[RememberResult]:
        """Embed texts in batches and store them in one transaction."""
        contents = [clean_text(text) for text in texts]
        scope = self._scope(namespace, session_id or self.settings.session)
        assert scope.session_id is not None
        meta = clean_metadata(metadata)
        if created_at is not None and created_at.tzinfo is None:
            created_at = created_at.astimezone()  # a naive date means the caller's local time
        with self.unit() as repo:  # fail fast on a model mismatch, before any embedding work
            self.check_embedding_space(repo, claim=False)
        vectors: Any
        try:
            vectors = self.embedder.embed(contents)
        except ProviderError as exc:
            # Nothing is lost: store the text now, embed it later (backfill).
            self.last_provider_error = exc.message
            vectors = [None] * len(contents)
        with self.unit(scope.namespace) as repo:
            self.check_embedding_space(repo, claim=True)
            stored = repo.add_many(
                [
                    NewMemory(
                        namespace=scope.namespace,
                        session_id=scope.session_id,
                        content=content,
                        embedding=vector,
                        embedding_model=self.embedder.model,
                        metadata=meta,
                        created_at=created_at,
                    )
                    for content, vector in zip(contents, vectors, strict=True)
                ]
            )
        pending = vectors[0] is None if len(contents) else False
        if not pending:
            self.backfill(limit=BACKFILL_BATCH, quiet=True)  # the provider answers: catch up on old ones
        covered = [self.embedder.covered(content) for content in contents]
        return [
            RememberResult(
                new_id,
                created,
                scope.namespace,
                scope.session_id,
                pending=pending,
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
    ) -> list[RecalledMemory]:
        """The best memories for the query, best first; k rows whenever the scope holds k.

        mode: hybrid (BM25 + vector, fused), vector or text; default MEMAGENT_RECALL_MODE.
        ef_search: HNSW candidate list size for this query (higher: better recall, slower); default
        MEMAGENT_EF_SEARCH. It is raised to k (or the hybrid depth) when smaller.
        """
        query = clean_text(query, "query")
        k = k if k is not None else self.settings.top_k
        if not 1 <= k <= 1000:
            raise InputError(f"k must be between 1 and 1000, not {k}.")
        max_distance = max_distance if max_distance is not None else self.settings.max_distance
        ef_search = ef_search if ef_search is not None else self.settings.ef_search
        if not 1 <= ef_search <= 1000:
            raise InputError(f"ef_search must be between 1 and 1000, not {ef_search}.")
        if max_distance is not None and not 0.0 <= max_distance <= 2.0:
            raise InputError(f"max distance must be between 0 and 2 (cosine distance), not {max_distance}.")
        scope = self._scope(namespace, session_id)
        with self.unit() as repo:
            if not self.check_embedding_space(repo, claim=False):
                return []  # nothing was ever stored: no need to load or call the model
        mode = mode or self.settings.recall_mode
        if mode not in ("hybrid", "vector", "text"):
            raise InputError(f"mode must be hybrid, vector or text, not {mode!r}.")
        self.degraded = None
        vector: Any = None
        try:
            vector = self.embedder.embed([query])[0]
        except ProviderError as exc:
            if mode == "vector":
                raise
            # Full-text recall still works without the provider; say so rather than fail the turn.
            self.degraded = exc.message
            mode = "text"
        else:
            self.backfill(limit=BACKFILL_BATCH, quiet=True)
        with self.unit(scope.namespace) as repo:
            return repo.search(
                vector,
                scope=scope,
                k=k,
                max_distance=max_distance,
                ef_search=ef_search,
                mode=mode,
                query_text=query,
                depth=self.settings.hybrid_depth,
                text_weight=self.settings.hybrid_text_weight,
                recency_half_life=(
                    timedelta(days=self.settings.recency_half_life_days)
                    if self.settings.recency_half_life_days
                    else None
                ),
                index=repo.index_kind(),
            )

    def pending(self, *, namespace: str | None = None, all_namespaces: bool = False) -> int:
        """How many memories wait for their embedding (in the namespace, or in every namespace)."""
        scope = None if all_namespaces else self._scope(namespace, None).namespace
        with self.unit(scope or "*") as repo:
            return repo.pending_count(scope)

    def backfill(
        self,
        *,
        limit: int | None = None,
        batch: int = BACKFILL_BATCH,
        quiet: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Embed memories stored while the provider was failing; returns how many were embedded.

        Runs in batches, each committed, so it can stop and resume. quiet: stop at the first provider
        error instead of raising it (the automatic catch-up after a successful call).
        """
        done = 0
        while limit is None or done < limit:
            size = batch if limit is None else min(batch, limit - done)
            with self.unit("*") as repo:
                # Every remember and recall comes here: the common case (nothing pending) is one query.
                waiting = repo.pending_batch(size)
                if not waiting:
                    return done
                self.check_embedding_space(repo, claim=False)  # never embed with the wrong model
            try:
                vectors = self.embedder.embed([content for _, content in waiting])
            except ProviderError:
                if quiet:
                    return done
                raise
            with self.unit("*") as repo:
                self.check_embedding_space(repo, claim=False)
                filled = repo.set_embeddings(
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
        if not 1 <= limit <= 10000:
            raise InputError(f"limit must be between 1 and 10000, not {limit}.")
        scope = self._scope(namespace, session_id)
        with self.unit(scope.namespace) as repo:
            return repo.recent(scope, limit=limit)

    def count(
        self, *, namespace: str | None = None, session_id: str | None = None, before: datetime | None = None
    ) -> int:
        """How many memories are in scope."""
        scope = self._scope(namespace, session_id, before)
        with self.unit(scope.namespace) as repo:
            return repo.count(scope)

    def purge(
        self, *, namespace: str | None = None, session_id: str | None = None, before: datetime | None = None
    ) -> int:
        """Delete the memories in scope (one namespace; optionally one session, older than a date)."""
        scope = self._scope(namespace, session_id, before)
        with self.unit(scope.namespace) as repo:
            return repo.purge(scope)


@contextmanager
def open_memory(
    settings: Settings, *, embedder: Embedder | None = None, notify: Callable[[str], None] | None = None
) -> Iterator[MemoryService]:
    """Open the configured database (schema at head) and yield a MemoryService over it.

    A vector index left missing by a killed bulk import is rebuilt first (notify says so).
    """
    embedder = embedder or make_embedder(settings)
    with Database(settings) as db:
        db.ensure_schema(embedding_dim=embedder.dim)
        service = MemoryService(db.sessions, embedder, settings)
        catch_up(service, notify)
        yield service


def catch_up(service: MemoryService, notify: Callable[[str], None] | None = None) -> None:
    """What a run does first once the database answers: rebuild a vector index a killed import left out,
    and store the memories kept in the recovery file while the database was unreachable."""
    from memagent.maintenance import IndexMaintenance
    from memagent.recovery import RecoveryFile

    say = notify or (lambda _: None)
    if IndexMaintenance(service).repair():
        say("Rebuilt the vector index, which an interrupted import had left out.")
    replayed = RecoveryFile(service.settings.home_path()).replay(service)
    if replayed:
        say(f"Stored {replayed} memories kept in the recovery file while the database was unreachable.")
