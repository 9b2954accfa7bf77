"""Engine and session factories, the embedded server when no URL is set, and the schema-at-head check."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from memagent.config import Settings
from memagent.errors import ConfigError, DatabaseError, SchemaError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection, Engine
    from sqlalchemy.orm import Session, sessionmaker

    from memagent.embedded import EmbeddedPostgres

# Serialises concurrent migrations (two memagent processes starting on a fresh database).
MIGRATION_LOCK_KEY = 0x6D656D61  # "mema"


def normalise_url(url: str) -> str:
    """Name the psycopg2 driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def masked_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def migrations_dir() -> Path:
    """The Alembic script folder: top-level alembic/ in a checkout, memagent/_alembic in a wheel."""
    spec = importlib.util.find_spec("memagent._alembic")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "env.py").exists():
                return Path(location)
    checkout = Path(__file__).resolve().parent.parent / "alembic"
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


class Database:
    """The database memagent talks to: configured by URL, or the embedded server started on demand.

    Use as a context manager; closing disposes the engine and releases the embedded server.
    """

    def __init__(self, settings: Settings, *, url: str | None = None) -> None:
        self.settings = settings
        explicit = url or (settings.database_url.get_secret_value() if settings.database_url else None)
        self._url = normalise_url(explicit) if explicit else None
        self._embedded: EmbeddedPostgres | None = None
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    @property
    def is_embedded(self) -> bool:
        """True when memagent runs its own PostgreSQL."""
        return self._url is None or self._embedded is not None

    def describe(self) -> str:
        """Where the data lives, safe to print."""
        if self._url is not None and self._embedded is None:
            return masked_url(self._url)
        from memagent.embedded import cluster_paths

        return f"embedded PostgreSQL in {cluster_paths(self.settings.home_path()).data}"

    def open(self) -> Database:
        """Start the embedded server if needed and create the engine (idempotent)."""
        if self._engine is not None:
            return self
        from sqlalchemy import create_engine
        from sqlalchemy.orm import sessionmaker

        url = self._url
        if url is None:
            from memagent.embedded import EmbeddedPostgres

            self._embedded = EmbeddedPostgres(self.settings.home_path())
            url = self._embedded.acquire()
            self._url = url
        from sqlalchemy.exc import ArgumentError

        try:
            self._engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
        except (ArgumentError, ValueError):  # the message would echo the URL, password included
            raise ConfigError(
                "MEMAGENT_DATABASE_URL is not a valid database URL.",
                hint="Use postgresql://user:password@host:5432/database.",
            ) from None
        if self._embedded is not None:
            _restart_on_connect_failure(self._engine, self._embedded)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self

    def close(self) -> None:
        """Dispose of the engine and release the embedded server."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._sessions = None
        if self._embedded is not None:
            self._embedded.release()

    def __enter__(self) -> Database:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (after open())."""
        if self._engine is None:
            self.open()
        assert self._engine is not None
        return self._engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory (after open())."""
        if self._sessions is None:
            self.open()
        assert self._sessions is not None
        return self._sessions

    # -- schema ---------------------------------------------------------------------------------------------

    @staticmethod
    def lock_migrations(connection: Connection) -> None:
        """Take the migration lock for the current transaction."""
        from sqlalchemy import text

        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})

    def schema_state(self) -> tuple[set[str], set[str]]:
        """(revisions the database is at, head revisions of the scripts)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        with translate_errors(self), self.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        return current, heads

    def upgrade(self, revision: str = "head", *, embedding_dim: int | None = None) -> None:
        """Apply migrations up to `revision` in one transaction, serialised across processes."""
        self._migrate("upgrade", revision, embedding_dim)

    def downgrade(self, revision: str) -> None:
        """Revert migrations down to `revision`."""
        self._migrate("downgrade", revision, None)

    def _migrate(self, direction: str, revision: str, embedding_dim: int | None) -> None:
        from sqlalchemy.exc import DBAPIError

        from alembic import command

        with translate_errors(self), self.engine.begin() as conn:
            self.lock_migrations(conn)
            dim = embedding_dim if embedding_dim is not None else self.settings.embedding_spec().dim
            config = alembic_config(conn, dim)
            try:
                getattr(command, direction)(config, revision)
            except DBAPIError as exc:
                if "extension" in str(exc.orig) and "vector" in str(exc.orig):
                    raise DatabaseError(
                        f"the PostgreSQL server at {self.describe()} does not have the pgvector extension.",
                        hint="Use the pgvector/pgvector image (see docker-compose.yml) or install pgvector.",
                    ) from None
                raise

    def ensure_schema(self, *, embedding_dim: int | None = None) -> None:
        """Make sure the schema is at head: upgrade the embedded database, or tell the user what to run."""
        current, heads = self.schema_state()
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
        if self.is_embedded:
            self.upgrade(embedding_dim=embedding_dim)
            return
        where = ", ".join(sorted(current)) or "empty"
        raise SchemaError(
            f"the database schema is not up to date ({where}; memagent needs {', '.join(sorted(heads))}).",
            hint="Run `alembic upgrade head` (or `memagent migrate`).",
        )


def _restart_on_connect_failure(engine: Engine, embedded: EmbeddedPostgres) -> None:
    """If the embedded server went away (stopped, crashed, machine slept), start it again on the next connect.

    Pooled connections are pinged before use (pool_pre_ping), so a restart is noticed at the next unit of
    work, which then reconnects here; a turn in flight at that moment fails once and is kept (recovery).
    """
    import psycopg2
    from sqlalchemy import event

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except psycopg2.OperationalError:
            embedded.acquire()  # starts the server unless another process already did
            return dialect.connect(*cargs, **cparams)


class translate_errors:
    """Turn driver errors into one-line DatabaseErrors that never show the password."""

    def __init__(self, db: Database | None = None) -> None:
        self.db = db

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import psycopg2
        from sqlalchemy.exc import DBAPIError, OperationalError

        if exc is None:
            return
        if isinstance(exc, psycopg2.Error):  # raised by the driver directly (COPY goes around SQLAlchemy)
            raise DatabaseError(f"database error: {_first_line(exc)}") from None
        if not isinstance(exc, DBAPIError):
            return
        where = self.db.describe() if self.db is not None else "the database"
        first = _first_line(exc.orig)
        if self.db is not None and self.db.settings.database_url is not None:
            secret = self.db.settings.database_url.get_secret_value()
            from sqlalchemy.engine import make_url

            try:
                password = make_url(normalise_url(secret)).password
            except Exception:
                password = None
            if password:
                first = first.replace(str(password), "***")
        if isinstance(exc, OperationalError) and exc.connection_invalidated is False and _is_connect(first):
            raise DatabaseError(f"cannot connect to PostgreSQL at {where}: {first}") from None
        raise DatabaseError(f"database error: {first}") from None


def _is_connect(message: str) -> bool:
    lowered = message.lower()
    return any(
        word in lowered
        for word in (
            "connection to server",
            "could not connect",
            "connection refused",
            "does not exist",
            "password authentication",
            "timeout expired",
            "could not translate host",
        )
    )


def _first_line(error: Any) -> str:
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else error.__class__.__name__
