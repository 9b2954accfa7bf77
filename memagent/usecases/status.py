"""What `memagent config` reports about the database: server, pgvector, schema, embeddings, isolation."""

from __future__ import annotations

from dataclasses import dataclass

from memagent.store.roles import Isolation
from memagent.store.server import ServerFacts
from memagent.usecases.service import MemoryService


@dataclass(frozen=True)
class DatabaseStatus:
    """The facts about the opened database a user checks first."""

    server: ServerFacts
    embedding_space: tuple[str, int] | None
    index_kind: str
    isolation: Isolation


def database_status(service: MemoryService) -> DatabaseStatus:
    """Read the status in one unit of work (as the login role: it reports on roles and the catalogue)."""
    with service.unit(admin=True) as store:
        return DatabaseStatus(store.server(), store.space.get(), store.space.index_kind(), store.isolation())
