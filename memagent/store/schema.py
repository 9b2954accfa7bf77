"""The schema: Alembic's scripts, migrations serialised across processes, and the schema-at-head check."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from memagent.errors import DatabaseError, SchemaError
from memagent.store import roles
from memagent.store.database import Database
from memagent.store.db_errors import translate_errors
from memagent.store.roles import Isolation

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

# Serialises concurrent migrations (two memagent processes starting on a fresh database).
MIGRATION_LOCK_KEY = 0x6D656D61  # "mema"
# The newest revision in alembic/versions (a test keeps it equal to Alembic's head): every run compares the
# database with it in one query, and loads Alembic (a fifth of a second) only when they differ.
HEAD = "0036"


def migrations_dir() -> Path:
    """The Alembic script folder: top-level alembic/ in a checkout, memagent/_alembic in a wheel."""
    spec = importlib.util.find_spec("memagent._alembic")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "env.py").exists():
                return Path(location)
    checkout = Path(__file__).resolve().parents[2] / "alembic"
    if (checkout / "env.py").exists():
        return checkout
    raise SchemaError("memagent's migration scripts are missing from this installation.")


def alembic_config(connection: Connection | None = None, embedding_dim: int | None = None) -> Config:
    """An Alembic Config for memagent's scripts, optionally bound to an open connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    if embedding_dim is not None:
        config.attributes["embedding_dim"] = embedding_dim
    return config


def embedding_dim_for_migration(config: Config) -> int:
    """The vector dimension a migration creates: memagent's choice, else the configured model's."""
    dim = config.attributes.get("embedding_dim")
    if dim is None:
        from memagent.config import get_settings

        dim = get_settings().embedding_spec().dim
    return int(dim)


def lock(connection: Connection) -> None:
    """Take the migration lock for the current transaction."""
    from sqlalchemy import text

    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def state(db: Database) -> tuple[set[str], set[str]]:
    """(revisions the database is at, head revisions of the scripts)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with translate_errors(db), db.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current, heads


def upgrade(db: Database, revision: str = "head", *, embedding_dim: int | None = None) -> Isolation:
    """Apply migrations up to `revision` in one transaction, serialised across processes.

    Returns whether namespaces are isolated by the database afterwards (memagent.store.roles).
    """
    return _migrate(db, "upgrade", revision, embedding_dim)


def downgrade(db: Database, revision: str) -> None:
    """Revert migrations down to `revision`."""
    _migrate(db, "downgrade", revision, None)


def _migrate(db: Database, direction: str, revision: str, embedding_dim: int | None) -> Isolation:
    from alembic import command

    with migration_errors(db), db.engine.begin() as conn:
        lock(conn)
        dim = embedding_dim if embedding_dim is not None else db.settings.embedding_spec().dim
        getattr(command, direction)(alembic_config(conn, dim), revision)
        return roles.isolation(conn)


@contextmanager
def migration_errors(db: Database) -> Iterator[None]:
    """One clear line for what stops a migration: no pgvector, no right to create it, no connection."""
    from sqlalchemy.exc import DBAPIError

    with translate_errors(db):
        try:
            yield
        except DBAPIError as exc:
            message = str(exc.orig)
            if "permission denied" in message and "extension" in message:
                raise DatabaseError(
                    f"this login may not create the pgvector extension in {db.describe()}: PostgreSQL lets "
                    "only a superuser create it.",
                    hint="Ask an administrator to run `CREATE EXTENSION vector;` in that database, then "
                    "migrate again (`memagent migrate` or `alembic upgrade head`).",
                ) from None
            if "extension" in message and "vector" in message:
                raise DatabaseError(
                    f"the PostgreSQL server at {db.describe()} does not have the pgvector extension.",
                    hint="Use the pgvector/pgvector image (see docker-compose.yml) or install pgvector.",
                ) from None
            raise


def at_head(db: Database) -> bool:
    """Whether the database's schema is at HEAD (one query; no Alembic)."""
    from sqlalchemy import text

    with translate_errors(db), db.engine.connect() as conn:
        if conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar_one():
            return {
                str(v) for v in conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            } == {HEAD}
    return False


def ensure_at_head(db: Database, *, embedding_dim: int | None = None) -> None:
    """Make sure the schema is at head: upgrade the embedded database, or tell the user what to run."""
    if at_head(db):
        return
    current, heads = state(db)
    if current == heads:
        return
    from alembic.script import ScriptDirectory

    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    unknown = current - known
    if unknown:
        raise SchemaError(
            f"the database schema is at revision {', '.join(sorted(unknown))}, "
            "newer than this memagent knows.",
            hint="Upgrade memagent.",
        )
    if db.is_embedded:
        upgrade(db, embedding_dim=embedding_dim)
        return
    where = ", ".join(sorted(current)) or "empty"
    raise SchemaError(
        f"the database schema is not up to date ({where}; memagent needs {', '.join(sorted(heads))}).",
        hint="Run `memagent migrate` (or `alembic upgrade head` in memagent's checkout).",
    )
