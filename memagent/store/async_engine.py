"""AsyncMemory's engine: SQLAlchemy's asyncio extension over asyncpg, on the same URL or embedded socket.

memagent's code uses the engine's synchronous face (`AsyncEngine.sync_engine`) from AsyncMemory's bridge
(memagent.bridge): the same sessions, SQL and row-level security as psycopg2's engine, each database call
awaited on the caller's event loop. The URL is memagent's libpq URL; what libpq options asyncpg has its own
way of taking are translated (connect_timeout, application_name, options), and one it cannot honour is a
ConfigError naming it. A connection that cannot be made fails as psycopg2's does (an OperationalError the
usual one-line error comes from), not with a bare OSError.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from memagent.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# Concurrent tasks share the pool; one waiting for a connection waits on the event loop, not a thread.
POOL_SIZE = 10
MAX_OVERFLOW = 10

# URL options asyncpg reads from a DSN itself (asyncpg.connect_utils).
_ASYNCPG_OPTIONS = {
    "host", "port", "user", "password", "passfile", "dbname", "database", "service", "sslmode", "sslcert",
    "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "target_session_attrs", "krbsrvname", "gsslib",
}  # fmt: skip
# Sessions like psycopg2's: READ COMMITTED whatever the database's default (database._read_committed), and
# each statement planned for its own values. asyncpg prepares every statement, and after five runs
# PostgreSQL may plan one once for all values, blind to the namespace's size, the depth and the query's
# words; psycopg2 sends values inline, so each recall is planned for its own: the same here.
_SESSION = {"default_transaction_isolation": "read committed", "plan_cache_mode": "force_custom_plan"}


def connect_arguments(url: str) -> tuple[str, dict[str, Any]]:
    """(asyncpg DSN, asyncpg.connect keyword arguments) for memagent's libpq URL; ConfigError for an option
    asyncpg cannot honour."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    query = {key: value if isinstance(value, str) else value[-1] for key, value in parsed.query.items()}
    settings = dict(_SESSION)
    kwargs: dict[str, Any] = {}
    if "connect_timeout" in query:
        kwargs["timeout"] = float(query.pop("connect_timeout"))
    if "application_name" in query:
        settings["application_name"] = query.pop("application_name")
    for option in shlex.split(query.pop("options", "")):  # "-c name=value …", "--name=value"
        name, _, value = option.removeprefix("-c").removeprefix("--").lstrip("-").partition("=")
        if name and value:
            settings[name.strip()] = value
    if query.pop("gssencmode", "prefer") == "require":
        raise ConfigError(
            "AsyncMemory cannot require GSSAPI encryption (gssencmode=require): asyncpg has none."
        )
    unknown = sorted(set(query) - _ASYNCPG_OPTIONS)
    if unknown:
        raise ConfigError(
            f"AsyncMemory cannot pass the URL option {unknown[0]!r} to asyncpg (Memory's psycopg2 can).",
            hint="Remove it from MEMAGENT_DATABASE_URL, or use Memory.",
        )
    port = parsed.port if parsed.port is not None else query.get("port")
    if port is not None and not (str(port).isdigit() and 0 < int(port) < 65536):
        raise ConfigError("the port in MEMAGENT_DATABASE_URL must be a number from 1 to 65535.")
    dsn = parsed.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    return dsn, kwargs | {"server_settings": settings}


def async_engine(url: str) -> AsyncEngine:
    """An asyncpg engine over memagent's libpq URL: pinged connections, sessions like psycopg2's, dates
    read as psycopg2's are. asyncpg reads and sends pgvector's vector type in its text form ('[1,2,3]'), as
    memagent does with psycopg2."""
    try:
        import asyncpg
        import greenlet  # noqa: F401
    except ImportError:
        raise ConfigError(
            "AsyncMemory needs asyncpg and greenlet.", hint="pip install 'memagent[async]'"
        ) from None
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    dsn, kwargs = connect_arguments(url)

    async def connect() -> Any:
        try:
            return await asyncpg.connect(dsn, **kwargs)
        except (OSError, TimeoutError) as exc:  # refused, no such host or socket, timed out
            raise dbapi.OperationalError(f"could not connect to server: {exc}") from exc
        except asyncpg.PostgresError as exc:  # the server's answer: a login or a database it refuses
            raise dbapi.OperationalError(str(exc), exc) from exc

    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
    )
    dbapi = engine.dialect.loaded_dbapi

    @event.listens_for(engine.sync_engine, "connect")
    def connected(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.run_async(_read_any_date)

    return engine


_Y2K = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's epoch: timestamptz is microseconds since then
_MICROSECOND = timedelta(microseconds=1)


async def _read_any_date(connection: Any) -> None:
    """Read every stored timestamptz, even one Python cannot represent, as the nearest date memagent
    accepts (as database._read_any_date does for psycopg2): one bad row never makes a namespace unreadable."""
    from memagent.validation import MAX_DATE, MIN_DATE

    def decode(value: tuple[int]) -> datetime:
        try:
            return _Y2K + value[0] * _MICROSECOND
        except OverflowError:
            return MIN_DATE if value[0] < 0 else MAX_DATE

    def encode(value: datetime) -> tuple[int]:
        aware = value if value.tzinfo is not None else value.astimezone()  # naive: local time, as psycopg2
        return ((aware - _Y2K) // _MICROSECOND,)

    await connection.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=encode, decoder=decode, format="tuple"
    )
