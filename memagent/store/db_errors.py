"""Driver errors as memagent's: one line, no password, an outage told apart from an answer (psycopg2's and
SQLAlchemy's asyncpg adapter's alike)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from memagent.errors import DatabaseError, DatabaseUnavailableError, first_line
from memagent.redact import redact

if TYPE_CHECKING:
    from memagent.store.database import Database


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
        where = self.db.describe() if self.db is not None else "the database"
        if isinstance(exc, psycopg2.Error):  # raised by the driver directly (COPY, the one-statement path)
            first = redact(first_line(exc))
            if isinstance(exc, psycopg2.OperationalError) and exc.pgcode is None and _is_connect(first):
                raise _cannot_connect(where, first) from None  # (as SQLAlchemy's connect below)
            kind = DatabaseUnavailableError if unreachable(exc) else DatabaseError
            raise kind(f"database error: {first}") from None
        if not isinstance(exc, DBAPIError):
            return
        first = redact(_driver_message(exc.orig))
        if isinstance(exc, OperationalError) and exc.connection_invalidated is False and _is_connect(first):
            raise _cannot_connect(where, first) from None
        if exc.connection_invalidated or unreachable(exc.orig):
            raise DatabaseUnavailableError(f"database error: {first}") from None
        raise DatabaseError(f"database error: {first}") from None


def _cannot_connect(where: str, first: str) -> DatabaseError:
    """A refused or timed-out connection is an outage (memories wait in the recovery file); a rejected login
    or a wrong database name is an answer that retrying will not change."""
    kind = DatabaseError if _is_refusal(first) else DatabaseUnavailableError
    return kind(f"cannot connect to PostgreSQL at {where}: {first}")


def unreachable(error: Any) -> bool:
    """A connection-level failure (no SQLSTATE, class 08, or the server shutting down), not an answer.
    psycopg2's OperationalError, or the one SQLAlchemy's asyncpg adapter raises (same name, same pgcode)."""
    if not any(kind.__name__ == "OperationalError" for kind in type(error).__mro__):
        return False
    code = getattr(error, "pgcode", None)
    return code is None or str(code).startswith(("08", "57P"))


def _driver_message(error: Any) -> str:
    """The first line of a driver's error, without the class SQLAlchemy's asyncpg adapter puts before it."""
    line = first_line(error)
    if line.startswith("<class '") and "'>: " in line:
        line = line.split("'>: ", 1)[1]
    if line.startswith("cannot switch to state") and "in progress" in line:  # asyncpg's words for it
        return "the connection to the server was lost in the middle of a statement"
    return line


def _is_refusal(message: str) -> bool:
    lowered = message.lower()
    return any(
        word in lowered
        for word in (
            "password authentication",
            "authentication failed",
            "does not exist",
            "no pg_hba.conf entry",
            "invalid sslmode",
            "invalid connection option",
            "permission denied",
        )
    )


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
