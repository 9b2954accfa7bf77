"""Pooled connections checked before use (`SELECT 1`), except by a caller that replaces a dropped one itself.

SQLAlchemy's `pool_pre_ping` checks every connection the pool hands out: one more round trip each time. Most
of memagent's units of work need it (an ORM session's transaction cannot simply be sent again), but
`UnitOfWork.run` sends one statement in autocommit and, when the connection turns out dropped, discards it
and sends the statement again on a checked one; for it the check only costs time (0.1-0.4 ms a call, and a
hybrid recall takes up to three connections, a chat turn four). So the engine checks connections in a
`checkout` event instead of with `pool_pre_ping`, the way SQLAlchemy documents for custom checks, and
`unchecked()` turns the check off for the check-outs of one block (in this thread or task).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import InvalidatePoolError

_SKIP: ContextVar[bool] = ContextVar("memagent_unchecked", default=False)
_FRESH = "memagent.fresh"  # a connection just opened: nothing to check yet (as pool_pre_ping)


@contextmanager
def unchecked() -> Iterator[None]:
    """Connections checked out in this block are not checked first: the caller sends its statement again
    on a checked connection when the one it got is dropped (UnitOfWork.run)."""
    token = _SKIP.set(True)
    try:
        yield
    finally:
        _SKIP.reset(token)


def check_before_use(engine: Engine) -> None:
    """Check each connection the engine's pool hands out, but one just opened or inside unchecked(). A
    dropped connection invalidates the pool (the server restarted: every pooled connection is gone) and the
    pool connects anew, as pool_pre_ping does."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def opened(dbapi_connection: Any, record: Any) -> None:
        record.info[_FRESH] = True

    @event.listens_for(engine, "checkout")
    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.pop(_FRESH, False) or _SKIP.get():
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError(str(exc)) from exc
            raise
