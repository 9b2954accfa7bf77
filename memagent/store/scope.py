"""Which memories a statement covers, and how rows become the plain records callers get.

A Scope is rendered once, as a SQLAlchemy expression with named bind parameters; the hand-written search
SQL (memagent.store.search_sql) takes the same expression compiled to text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, bindparam
from sqlalchemy.dialects.postgresql import psycopg2

from memagent.records import MemoryRecord, RecalledMemory
from memagent.store.models import MemoryRow

MEMORIES: FromClause = MemoryRow.__table__


@dataclass(frozen=True)
class Scope:
    """One namespace, optionally one session and a date bound."""

    namespace: str
    session_id: str | None = None
    before: datetime | None = None

    def where(self, table: FromClause = MEMORIES) -> ColumnElement[bool]:
        """The scope as a condition on `table` (memories or an alias); values are bound, never inlined."""
        clauses = [table.c.namespace == bindparam("scope_namespace", self.namespace)]
        if self.session_id is not None:
            clauses.append(table.c.session_id == bindparam("scope_session", self.session_id))
        if self.before is not None:
            clauses.append(table.c.created_at < bindparam("scope_before", self.before))
        return and_(*clauses)

    def sql(self) -> tuple[str, dict[str, Any]]:
        """where() on alias `m` as SQL text for a text() statement, with its bind parameters."""
        params: dict[str, Any] = {"scope_namespace": self.namespace}
        if self.session_id is not None:
            params["scope_session"] = self.session_id
        if self.before is not None:
            params["scope_before"] = self.before
        return _compiled(self.session_id is not None, self.before is not None), params


@lru_cache(maxsize=4)
def _compiled(has_session: bool, has_before: bool) -> str:
    # The text depends only on which parts are set: compile each shape once.
    shape = Scope("", "" if has_session else None, datetime.min if has_before else None)
    # The driver memagent uses, with text()'s :name parameters (and no casts written into the SQL).
    dialect = psycopg2.dialect(paramstyle="named")  # type: ignore[no-untyped-call]
    return str(shape.where(MEMORIES.alias("m")).compile(dialect=dialect))


# The columns every read returns, in the order the records take them.
RECORD_COLUMNS = (
    MemoryRow.id,
    MemoryRow.namespace,
    MemoryRow.session_id,
    MemoryRow.content,
    MemoryRow.created_at,
    MemoryRow.embedding_model,
    MemoryRow.metadata_.label("metadata"),
)


def to_record(row: Any) -> MemoryRecord:
    """A row with RECORD_COLUMNS as the caller's dataclass."""
    return MemoryRecord(
        id=row.id,
        namespace=row.namespace,
        session_id=row.session_id,
        content=row.content,
        created_at=row.created_at,
        embedding_model=row.embedding_model,
        metadata=dict(row.metadata or {}),
    )


def to_recalled(row: Any, *, score: float) -> RecalledMemory:
    """A row with RECORD_COLUMNS and its distance as a recalled memory."""
    distance = None if row.distance is None else float(row.distance)
    return RecalledMemory(**to_record(row).__dict__, distance=distance, score=score)
