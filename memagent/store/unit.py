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
from memagent.store.space import SpaceRepository
from memagent.store.staging import StagingRepository

# The role whose transactions row-level security confines to one namespace (revision 0006).
APP_ROLE = "memagent_app"


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


class UnitOfWork:
    """Opens units of work over a session factory; remembers whether this login may take the app role."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions
        self._app_role: bool | None = None  # whether this login may switch to memagent_app (once known)

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
