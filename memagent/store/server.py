"""What the server is: PostgreSQL's and pgvector's versions, the schema revision."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class ServerFacts:
    """The server's PostgreSQL version, the pgvector extension's version, and the schema revision."""

    postgresql: str
    pgvector: str | None
    revision: str | None


def facts(session: Session) -> ServerFacts:
    """Read the facts in the caller's transaction."""
    row = session.execute(
        text(
            "SELECT current_setting('server_version') AS postgresql,"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector,"
            " CASE WHEN to_regclass('alembic_version') IS NOT NULL"
            "   THEN (SELECT string_agg(version_num, ', ') FROM alembic_version) END AS revision"
        )
    ).one()
    return ServerFacts(str(row.postgresql), row.pgvector, row.revision)
