"""Which memories a statement covers, and how rows become the plain records callers get.

A Scope is rendered once, as a SQLAlchemy expression with named bind parameters; the hand-written search
SQL (memagent.store.search_sql) takes the same expression compiled to text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    BindParameter,
    ColumnElement,
    FromClause,
    String,
    and_,
    any_,
    bindparam,
    cast,
    func,
    or_,
)
from sqlalchemy.dialects.postgresql import psycopg2

from memagent.records import MemoryRecord, RecalledMemory
from memagent.store.models import MemoryRow

MEMORIES: FromClause = MemoryRow.__table__


KINDS = ("exchange", "fact", "summary")


@dataclass(frozen=True)
class View:
    """Which of a namespace's memories a read sees (revision 0013): by default what memagent believes now.

    kinds: only these kinds (None: all). as_of: what memagent believed then — learned by then and not yet
    expired (None: now, i.e. not expired). archived: also memories compressed into a summary.
    The text ranking function applies the same conditions (memagent.store.text_ranking).
    """

    kinds: tuple[str, ...] | None = None
    as_of: datetime | None = None
    archived: bool = False

    def where(self, table: FromClause) -> list[ColumnElement[bool]]:
        """The view's conditions on `table`; values are bound, never inlined."""
        clauses: list[ColumnElement[bool]] = []
        if self.kinds is not None:
            # A CAST rather than the driver's ::type, which text() statements would read as a parameter.
            kinds = cast(bindparam("view_kinds", list(self.kinds)), ARRAY(String()))
            clauses.append(table.c.kind == any_(kinds))
        if self.as_of is None:
            clauses.append(table.c.expired_at.is_(None))
            if not self.archived:
                clauses.append(table.c.archived_at.is_(None))
        else:
            as_of: BindParameter[datetime] = bindparam("view_as_of", self.as_of)
            clauses.append(func.coalesce(table.c.learned_at, table.c.created_at) <= as_of)
            clauses.append(or_(table.c.expired_at.is_(None), table.c.expired_at > as_of))
            if not self.archived:
                clauses.append(or_(table.c.archived_at.is_(None), table.c.archived_at > as_of))
        return clauses

    def params(self) -> dict[str, Any]:
        """The bind parameters where() uses."""
        params: dict[str, Any] = {}
        if self.kinds is not None:
            params["view_kinds"] = list(self.kinds)
        if self.as_of is not None:
            params["view_as_of"] = self.as_of
        return params


@dataclass(frozen=True)
class Scope:
    """One namespace, optionally one session and a date bound, and the view of it (None: every memory)."""

    namespace: str
    session_id: str | None = None
    before: datetime | None = None
    view: View | None = None

    def where(self, table: FromClause = MEMORIES) -> ColumnElement[bool]:
        """The scope as a condition on `table` (memories or an alias); values are bound, never inlined."""
        clauses = [table.c.namespace == bindparam("scope_namespace", self.namespace)]
        if self.session_id is not None:
            clauses.append(table.c.session_id == bindparam("scope_session", self.session_id))
        if self.before is not None:
            clauses.append(table.c.created_at < bindparam("scope_before", self.before))
        if self.view is not None:
            clauses.extend(self.view.where(table))
        return and_(*clauses)

    def sql(self) -> tuple[str, dict[str, Any]]:
        """where() on alias `m` as SQL text for a text() statement, with its bind parameters."""
        params: dict[str, Any] = {"scope_namespace": self.namespace}
        if self.session_id is not None:
            params["scope_session"] = self.session_id
        if self.before is not None:
            params["scope_before"] = self.before
        view = None
        if self.view is not None:
            params.update(self.view.params())
            view = View(
                kinds=() if self.view.kinds is not None else None,
                as_of=datetime.min if self.view.as_of is not None else None,
                archived=self.view.archived,
            )
        return _compiled(self.session_id is not None, self.before is not None, view), params


@lru_cache(maxsize=64)
def _compiled(has_session: bool, has_before: bool, view: View | None) -> str:
    # The text depends only on which parts are set: compile each shape once.
    shape = Scope("", "" if has_session else None, datetime.min if has_before else None, view)
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
    MemoryRow.kind,
    MemoryRow.importance,
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
        kind=row.kind,
        importance=float(row.importance),
    )


def to_recalled(row: Any, *, score: float) -> RecalledMemory:
    """A row with RECORD_COLUMNS and its distance as a recalled memory."""
    distance = None if row.distance is None else float(row.distance)
    return RecalledMemory(**to_record(row).__dict__, distance=distance, score=score)
