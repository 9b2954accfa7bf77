"""AsyncMemory's engine: SQLAlchemy's asyncio extension over asyncpg, on the same URL or embedded socket.

memagent's code uses the engine's synchronous face (`AsyncEngine.sync_engine`) from AsyncMemory's bridge
(memagent.bridge): the same sessions, SQL and row-level security as psycopg2's engine, each database call
awaited on the caller's event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# Concurrent tasks share the pool; one waiting for a connection waits on the event loop, not a thread.
POOL_SIZE = 10
MAX_OVERFLOW = 10


def asyncpg_url(url: str) -> str:
    """The same database, through asyncpg (a Unix socket directory stays in ?host=)."""
    scheme, rest = url.split("://", 1)
    return "postgresql+asyncpg://" + rest if scheme.startswith("postgres") else url


def async_engine(url: str) -> AsyncEngine:
    """An asyncpg engine: pinged connections, READ COMMITTED whatever the database's default (as
    database._read_committed does for psycopg2). asyncpg reads and sends pgvector's vector type in its text
    form ('[1,2,3]'), as memagent does with psycopg2."""
    try:
        import asyncpg  # noqa: F401
        import greenlet  # noqa: F401
    except ImportError:
        from memagent.errors import ConfigError

        raise ConfigError(
            "AsyncMemory needs asyncpg and greenlet.", hint="pip install 'memagent[async]'"
        ) from None
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        asyncpg_url(url),
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        connect_args={
            "server_settings": {
                "default_transaction_isolation": "read committed",
                # asyncpg prepares every statement; after five runs PostgreSQL may plan one once for all
                # parameters, blind to the namespace's size, the depth and the query's words. psycopg2 sends
                # values inline, so each recall is planned for its own: the same here.
                "plan_cache_mode": "force_custom_plan",
            }
        },
    )

    @event.listens_for(engine.sync_engine, "connect")
    def connect(dbapi_connection: Any, record: Any) -> None:
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
