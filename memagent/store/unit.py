"""The unit of work: one transaction confined to one namespace by row-level security, and its repositories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.store.bulk import BulkRepository
from memagent.store.database import translate_errors
from memagent.store.hnsw import IndexRepository
from memagent.store.memories import MemoryRepository
from memagent.store.roles import APP_ROLE, Isolation, isolation
from memagent.store.server import ServerFacts, facts
from memagent.store.space import SpaceRepository
from memagent.store.staging import StagingRepository


class Store:
    """The repositories of one unit of work, all over its session (built on first use)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @cached_property
    def memories(self) -> MemoryRepository:
        """Memories: store, search, list, count, purge, pending embeddings."""
        return MemoryRepository(self._session)

    @cached_property
    def space(self) -> SpaceRepository:
        """The embedding space the database holds."""
        return SpaceRepository(self._session)

    @cached_property
    def index(self) -> IndexRepository:
        """The HNSW index."""
        return IndexRepository(self._session)

    @cached_property
    def bulk(self) -> BulkRepository:
        """Bulk reads and COPY loads."""
        return BulkRepository(self._session)

    @cached_property
    def staging(self) -> StagingRepository:
        """The re-embedding's staging table."""
        return StagingRepository(self._session)

    def server(self) -> ServerFacts:
        """PostgreSQL's and pgvector's versions and the schema revision."""
        return facts(self._session)

    def isolation(self) -> Isolation:
        """Whether this login's units of work can run as memagent_app."""
        return isolation(self._session)


class UnitOfWork:
    """Opens units of work over a session factory; remembers whether this login may take the app role."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions
        self._isolation: Isolation | None = None  # whether this login can run as memagent_app (once known)

    @contextmanager
    def __call__(self, namespace: str | None = None, *, admin: bool = False) -> Iterator[Store]:
        """One transaction: committed on success, rolled back on error.

        The transaction sees one namespace: it runs as the role memagent_app under row-level security
        (revision 0006) with memagent.namespace set, so even a query without a namespace filter reads and
        writes that namespace only. memagent.validation.ALL_NAMESPACES opens every namespace (export of all,
        import, backfill); None opens none. admin: schema work (index builds, the re-embedding switch, COPY)
        as the login role.
        """
        session = self._sessions()
        with translate_errors(), session, session.begin():
            if not admin:
                self._isolate(session, namespace)
            yield Store(session)
            if not admin and isinstance(session.get_bind(), Connection):
                # Joined to a caller's transaction (tests): LOCAL settings would outlive this unit.
                session.execute(text("SELECT set_config('role', 'none', true)"))

    def isolation(self) -> Isolation:
        """Whether units of work run as memagent_app under row-level security (asked once)."""
        if self._isolation is None:
            session = self._sessions()
            with translate_errors(), session, session.begin():
                self._isolation = isolation(session)
        return self._isolation

    def _isolate(self, session: Session, namespace: str | None) -> None:
        if self._isolation is None:
            self._isolation = isolation(session)
        session.execute(
            text(
                "SELECT set_config('memagent.namespace', :ns, true)"
                + (", set_config('role', :role, true)" if self._isolation.on else "")
            ),
            {"ns": namespace if namespace is not None else "", "role": APP_ROLE},
        )
