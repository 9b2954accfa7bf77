"""The database memagent talks to: engine and sessions over a URL or the embedded server, and its errors."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from memagent import bridge
from memagent.config import Settings
from memagent.errors import ConfigError
from memagent.redact import masked_url

# Hybrid recall's text side runs on a thread and a connection of its own (memagent.store.unit.run_aside):
# at most this many at once in a process.
RECALL_THREADS = 2

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.orm import Session, sessionmaker

    from memagent.store.embedded import EmbeddedPostgres

Driver = Literal["psycopg2", "asyncpg"]


def normalise_url(url: str) -> str:
    """Name the psycopg2 driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def check_url(url: str) -> None:
    """Refuse what is not a PostgreSQL URL, saying why without quoting it (it may hold a password)."""
    hint = "Use postgresql://user:password@host:5432/database, or unset it (the embedded server)."
    if not url.lower().startswith(("postgresql", "postgres:")):
        scheme = f"a {url.split(':', 1)[0][:20]!r} URL" if "://" in url else "not a URL"
        raise ConfigError(f"MEMAGENT_DATABASE_URL must be a PostgreSQL URL; this is {scheme}.", hint=hint)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        host = make_url(normalise_url(url)).host or ""
    except (ArgumentError, ValueError):  # (a port that is not a number)
        return  # (the engine says what is wrong with it, without the password)
    if "@" in host:  # an @ of the password taken for the host's: the driver would print it
        raise ConfigError(
            "MEMAGENT_DATABASE_URL has an @ in its user name or password; escape it as %40.", hint=hint
        )


class Database:
    """The database memagent talks to: configured by URL, or the embedded server started on demand.

    Use as a context manager; closing disposes the engine and releases the embedded server.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        url: str | None = None,
        driver: Driver = "psycopg2",
        embedded: bool = False,
    ) -> None:
        """driver: "asyncpg" for AsyncMemory (its SQLAlchemy asyncio engine; the sessions it gives are used
        from AsyncMemory's bridge, memagent.bridge). embedded: url is the embedded server's (already
        running: acquired by another Database of this process)."""
        self.settings = settings
        self.driver = driver
        explicit = url or (settings.database_url.get_secret_value() if settings.database_url else None)
        if explicit is not None:
            check_url(explicit)
        self._url = normalise_url(explicit) if explicit else None
        self._embedded: EmbeddedPostgres | None = None
        self._borrowed = embedded
        self._engine: Engine | None = None
        self._async_engine: AsyncEngine | None = None
        self._sessions: sessionmaker[Session] | None = None

    @property
    def is_embedded(self) -> bool:
        """True when memagent runs its own PostgreSQL."""
        return self._url is None or self._embedded is not None or self._borrowed

    @property
    def url(self) -> str | None:
        """The psycopg2 URL of the database (after open(); the embedded server's socket when embedded)."""
        return self._url

    def describe(self) -> str:
        """Where the data lives, safe to print."""
        if self._url is not None and self._embedded is None:
            return masked_url(self._url)
        from memagent.store.embedded_paths import cluster_paths

        return f"embedded PostgreSQL in {cluster_paths(self.settings.home_path()).data}"

    def libpq(self) -> tuple[str, str | None]:
        """(connection URI without the password, the password) for libpq tools such as psql (after open())."""
        from sqlalchemy.engine import URL, make_url

        url = make_url(self.engine.url.render_as_string(hide_password=False))
        # URL.set(password=None) keeps the password ("None: unchanged"): build the URL anew without it.
        bare = URL.create("postgresql", url.username, None, url.host, url.port, url.database, url.query)
        return bare.render_as_string(hide_password=False), None if url.password is None else str(url.password)

    def open(self) -> Database:
        """Start the embedded server if needed and create the engine (idempotent)."""
        if self._engine is not None:
            return self
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError
        from sqlalchemy.orm import sessionmaker

        from memagent.store.liveness import check_before_use

        url = self._url
        if url is None:
            from memagent.store.embedded import EmbeddedPostgres
            from memagent.store.embedded_paths import memory_mb

            cache = self.settings.shared_buffers_mb
            if cache is not None and cache > (available := memory_mb()):
                raise ConfigError(
                    f"MEMAGENT_SHARED_BUFFERS_MB={cache} is more than the {available} MB of memory "
                    "memagent may use here"
                )
            self._embedded = EmbeddedPostgres(
                self.settings.home_path(),
                linger=self.settings.linger,
                shared_buffers=self.settings.shared_buffers_mb,
            )
            try:
                url = bridge.forking(self._embedded.acquire)  # seconds when it starts: off AsyncMemory's loop
            except BaseException:  # a cancelled AsyncMemory call: the start ran to its end; undo it
                bridge.forking(self._embedded.release)
                raise
            self._url = url
        try:
            if self.driver == "asyncpg":
                from memagent.store.async_engine import async_engine

                self._async_engine = async_engine(url)
                self._engine = self._async_engine.sync_engine
            else:
                _read_any_date()
                # Two kept for the caller's units of work and one for each recall thread, so that recalls
                # at once do not open connections anew.
                kept = 2 + RECALL_THREADS
                self._engine = create_engine(url, pool_size=kept, max_overflow=4)
                check_before_use(self._engine)  # (not pool_pre_ping: UnitOfWork.run goes without it)
                _read_committed(self._engine)
        except (ArgumentError, ValueError):  # the message would echo the URL, password included
            raise ConfigError(
                "MEMAGENT_DATABASE_URL is not a valid database URL.",
                hint="Use postgresql://user:password@host:5432/database.",
            ) from None
        if self._embedded is not None:
            _restart_on_connect_failure(self._engine, self._embedded)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self

    def close(self, *, abandon: bool = False) -> None:
        """Dispose of the engine and release the embedded server. abandon: drop the pool's connections
        without closing them (asyncpg's, of an event loop that has ended)."""
        if self._engine is not None:
            self._engine.dispose(close=not abandon)  # asyncpg's: from AsyncMemory's bridge, which awaits
            self._engine = None
            self._async_engine = None
            self._sessions = None
        if self._embedded is not None:
            bridge.forking(self._embedded.release)  # it may stop the server: off AsyncMemory's loop

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


def _read_any_date() -> None:
    """Read every stored timestamptz, even one Python cannot represent (year 0, 10000: stored by an older
    memagent or by hand): it reads as the nearest date memagent accepts, so one bad row can never make a
    namespace, a listing or a backup unreadable. Registered once per process, for psycopg2's connections."""
    global _dates_registered
    if _dates_registered:
        return
    import psycopg2.extensions

    from memagent.validation import MAX_DATE, MIN_DATE

    exact = psycopg2.extensions.PYDATETIMETZ

    def cast(value: str | None, cursor: Any) -> Any:
        if value is None:
            return None
        try:
            return exact(value, cursor)
        except (ValueError, OverflowError):
            early = value.endswith(" BC") or value.startswith(("-", "0000", "0001"))
            return MIN_DATE if early else MAX_DATE

    psycopg2.extensions.register_type(
        psycopg2.extensions.new_type(exact.values, "MEMAGENT_TIMESTAMPTZ", cast)
    )
    _dates_registered = True


_dates_registered = False


def _read_committed(engine: Engine) -> None:
    """Every connection's transactions run at READ COMMITTED, whatever the database's default.

    Writers of one namespace update the same full-text statistics rows (revision 0011): under REPEATABLE
    READ or SERIALIZABLE (a database can default to either) the second of two concurrent writers would fail
    with a serialization error; READ COMMITTED waits for the first and goes on. Set once per connection, for
    the transactions SQLAlchemy begins and for UnitOfWork.run's implicit ones alike.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
        dbapi_connection.commit()


def _restart_on_connect_failure(engine: Engine, embedded: EmbeddedPostgres) -> None:
    """If the embedded server went away (stopped, crashed, machine slept), start it again on the next connect.

    Pooled connections are checked before use (memagent.store.liveness), so a restart is noticed at the
    next unit of work, which then reconnects here; a turn in flight at that moment fails once and is kept
    (recovery).
    """
    from sqlalchemy import event

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except (dialect.loaded_dbapi.OperationalError, OSError):  # psycopg2's, asyncpg's (no socket)
            bridge.forking(embedded.acquire)  # starts the server unless another process already did
            return dialect.connect(*cargs, **cparams)
