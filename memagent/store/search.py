"""Recall's queries: the vector ranking (the shape the HNSW index serves), BM25 text and hybrid fusion.

A recall is one RecallStatement (SQL from memagent.store.search_sql, its parameters, the settings it runs
under, and how its rows become results), run by either executor: SearchQueries.search inside a unit of
work's session, or UnitOfWork.run in one round trip (MemoryService.recall's path, which may run a hybrid
recall's text side on a connection of its own beside it: HybridSplit, memagent.usecases.checked).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.records import RecalledMemory
from memagent.store import search_split, search_sql
from memagent.store.hnsw import IndexKind
from memagent.store.keyed import keyed_scope, literal
from memagent.store.rerank import reranked, reranks
from memagent.store.roles import APP_ROLE
from memagent.store.scope import Scope, View
from memagent.store.search_split import HybridSplit
from memagent.store.text_floor import FLOOR
from memagent.store.vector_format import vector_text

SearchMode = Literal["vector", "text", "hybrid"]
# The embedding space a checked statement read with its rows: (model, dimension, index kind).
SpaceRow = tuple[str, int, IndexKind]


@dataclass(frozen=True)
class RecallStatement:
    """One recall as SQL: the statement (text() SQL), its parameters, the LOCAL settings it needs, and how its
    rows become results (positions: search_sql.RESULT_COLUMNS, then the space's columns when checked)."""

    sql: str
    params: dict[str, Any]
    settings: tuple[tuple[str, str], ...]
    mode: SearchMode
    k: int
    recency_half_life: timedelta | None = None
    importance_weight: float = 0.0
    split: HybridSplit | None = None  # hybrid: the same recall in two or three statements
    prepare: bool = False  # sent as a prepared statement by UnitOfWork.run (memagent.store.prepared)
    keyed: bool = (
        False  # one of a namespace's own (memagent.store.keyed): prepared only where a connection has room
    )

    def results(self, rows: Iterable[Sequence[Any]]) -> list[RecalledMemory]:
        """The recalled memories, best first (re-ranked by recency and importance when either is on)."""
        found = [_recalled(row) for row in rows if row[0] is not None]
        if reranks(self.recency_half_life, self.importance_weight):
            found = reranked(found, self.mode, self.recency_half_life, self.importance_weight)[: self.k]
        return found

    def with_text(self, text_rows: Sequence[Sequence[Any]]) -> RecallStatement:
        """Hybrid split: the statement finding the vector side and fusing it with the text side's rows."""
        assert self.split is not None
        params = self.params | HybridSplit.rows(text_rows=text_rows)
        keyed = self.split.vector_prepare  # prepared as the vector side: its namespace and depth written in
        sql = self.split.given_text_sql
        return replace(self, sql=sql, params=params, split=None, prepare=keyed, keyed=keyed)

    def fused(
        self, vector_rows: Sequence[Sequence[Any]], text_rows: Sequence[Sequence[Any]]
    ) -> RecallStatement:
        """Hybrid split: the statement fusing the two sides' rows."""
        assert self.split is not None
        params = self.params | HybridSplit.rows(vector_rows, text_rows)
        return replace(self, sql=self.split.given_sides_sql, params=params, split=None, prepare=True)

    @staticmethod
    def space(rows: Sequence[Sequence[Any]]) -> SpaceRow | None:
        """The embedding space a checked statement read in the same snapshot (None: never claimed)."""
        if not rows:
            return None
        row = rows[0]
        return str(row[-3]), int(row[-2]), "halfvec" if row[-1] == "halfvec" else "vector"


def recall_statement(
    query_embedding: Sequence[float] | Any,
    *,
    scope: Scope,
    k: int,
    max_distance: float | None = None,
    ef_search: int = 100,
    mode: SearchMode = "vector",
    query_text: str | None = None,
    depth: int = 50,
    text_weight: float = 1.0,
    recency_half_life: timedelta | None = None,
    importance_weight: float = 0.0,
    index: IndexKind | None = "vector",
    checked: bool = False,
    text_floor: float | None = None,
) -> RecallStatement:
    """The statement of one recall (see SearchQueries.search for what each mode does).

    checked: the embedding space's model, dimension and index kind come back with the rows (one row with
    NULL memory columns when nothing matched, none when no space was ever claimed).
    """
    if mode != "vector" and query_text is None:
        raise ValueError(f"{mode} search needs the query text")
    depth = max(depth, k)
    fetch = depth if reranks(recency_half_life, importance_weight) else k
    view = scope.view or View()  # recall always sees a view: by default what memagent believes now
    scope = replace(scope, view=view)
    condition, params = scope.sql()
    dim = 0 if query_embedding is None else len(query_embedding)
    sql = search_sql.recall_sql(
        mode, condition, max_distance=max_distance is not None, index=index, dim=dim, checked=checked
    )
    if text_floor is None:  # hybrid's, unless a maximum distance may drop the memory that sets it
        text_floor = FLOOR if mode == "hybrid" and max_distance is None else 0.0
    params |= search_sql.text_params(scope.namespace, scope.session_id, scope.before, view, text_floor)
    params |= search_sql.fusion_params(w_text=text_weight) | {
        "qtext": query_text,
        "qvec": None if query_embedding is None else vector_text(query_embedding),
        "k": fetch,
        "depth": depth,
        "max_distance": max_distance,
    }
    ef = str(max(ef_search, depth if mode == "hybrid" else fetch))
    settings = (*search_sql.SETTINGS.items(), ("hnsw.ef_search", ef))
    keyed = keyed_scope(scope)
    prepare = mode == "vector" and keyed
    if prepare:
        sql = literal(sql, scope.namespace, k=fetch)
    split = None
    if mode == "hybrid":
        cut = max_distance is not None
        vector_side = search_split.vector_side_sql(condition, index=index, dim=dim)
        given_text = search_split.given_text_sql(
            condition, max_distance=cut, index=index, dim=dim, checked=checked
        )
        split = HybridSplit(
            search_split.text_side_sql(),
            literal(vector_side, scope.namespace, depth=depth) if keyed else vector_side,
            search_split.given_sides_sql(condition, max_distance=cut, checked=checked),
            literal(given_text, scope.namespace, depth=depth) if keyed else given_text,
            vector_prepare=keyed,
        )
    return RecallStatement(
        sql, params, settings, mode, k, recency_half_life, importance_weight, split, prepare, keyed=prepare
    )


class SearchQueries:
    """Recall's queries over a session (MemoryRepository has them); never commits."""

    session: Session

    def search(
        self,
        query_embedding: Sequence[float] | Any,
        *,
        scope: Scope,
        k: int,
        max_distance: float | None = None,
        ef_search: int = 100,
        mode: SearchMode = "vector",
        query_text: str | None = None,
        depth: int = 50,
        text_weight: float = 1.0,
        recency_half_life: timedelta | None = None,
        importance_weight: float = 0.0,
        index: IndexKind | None = "vector",
    ) -> list[RecalledMemory]:
        """The k best memories in scope, best first.

        vector: nearest by cosine distance. The inner query is exactly `ORDER BY embedding <=> :q LIMIT k`,
        the shape the HNSW index serves. Scope filters apply after the index scan, so iterative scanning is
        switched on for this transaction: the scan keeps going until k rows pass the filter.
        text: BM25 over the full-text index. hybrid: both, fused by reciprocal rank
        (memagent.store.search_sql), each side ranking `depth` candidates.
        With a recency half-life, the `depth` best are re-ranked by score * 0.5^(age / half-life) (vector
        scores mapped to 0-1 first) and the k best kept; with an importance weight w, likewise by
        score * ((1 - w) + 2w * importance) (see _reranked).
        In every mode max_distance drops memories farther than that cosine distance from the query; it is
        applied outside the index query, where it cannot make the iterative scan walk its whole budget.
        index: the kind of HNSW index in place (memagent.store.hnsw); the vector ranking orders by the
        expression it is built on, and reports full-precision distances either way.
        """
        statement = recall_statement(
            query_embedding,
            scope=scope,
            k=k,
            max_distance=max_distance,
            ef_search=ef_search,
            mode=mode,
            query_text=query_text,
            depth=depth,
            text_weight=text_weight,
            recency_half_life=recency_half_life,
            importance_weight=importance_weight,
            index=index,
        )
        return statement.results(execute(self.session, statement))


def execute(session: Session, statement: RecallStatement) -> list[Any]:
    """Run a recall statement in the session's transaction (its settings LOCAL to it); returns the rows."""
    return run_in(session.connection(), statement.sql, statement.params, statement.settings)


def run_in(
    connection: Connection, sql: str, params: Mapping[str, Any], settings: Sequence[tuple[str, str]]
) -> list[Any]:
    """One text() statement (:name parameters) in the connection's transaction, `settings` LOCAL to it.

    psycopg2 gets the SQL compiled once per statement and sent as the driver takes it (no SQLAlchemy
    compilation per call); other drivers (asyncpg, for AsyncMemory) go through text().
    """
    if connection.dialect.driver == "psycopg2":
        if settings:
            connection.exec_driver_sql(
                settings_sql(len(settings), False, False), settings_values(settings, "")
            )
        return list(connection.exec_driver_sql(driver_sql(sql), dict(params)).all())
    if settings:
        connection.execute(
            text(settings_sql(len(settings), False, False, named=True)), settings_values(settings, "")
        )
    return list(connection.execute(text(sql), dict(params)).all())


@lru_cache(maxsize=256)
def driver_sql(sql: str) -> str:
    """text() SQL (:name parameters) as psycopg2 takes it (%(name)s), compiled once per statement."""
    from sqlalchemy.dialects.postgresql import psycopg2

    return str(text(sql).compile(dialect=psycopg2.dialect()))  # type: ignore[no-untyped-call]


def settings_values(settings: Sequence[tuple[str, str]], namespace: str) -> dict[str, str]:
    """The parameters of settings_sql."""
    values = {"memagent_ns": namespace, "memagent_role": APP_ROLE}
    for i, (name, value) in enumerate(settings):
        values |= {f"memagent_s{i}": name, f"memagent_v{i}": value}
    return values


@lru_cache(maxsize=32)
def settings_sql(count: int, namespace: bool, role: bool, *, named: bool = False) -> str:
    """One SELECT of set_config, LOCAL: the namespace, the role and `count` settings; ending in ";\n" (the
    statement follows). Parameters as psycopg2 takes them (%(name)s), or as text() does (named: :name)."""

    def p(name: str) -> str:
        return f":{name}" if named else f"%({name})s"

    calls = [f"set_config('memagent.namespace', {p('memagent_ns')}, true)"] if namespace else []
    if role:
        calls.append(f"set_config('role', {p('memagent_role')}, true)")
    calls += [f"set_config({p(f'memagent_s{i}')}, {p(f'memagent_v{i}')}, true)" for i in range(count)]
    return "SELECT " + ", ".join(calls) + ";\n" if calls else ""


def _recalled(row: Sequence[Any]) -> RecalledMemory:
    # Positions as in search_sql.RESULT_COLUMNS.
    distance = row[7]
    return RecalledMemory(
        id=row[0],
        namespace=row[1],
        session_id=row[2],
        content=row[3],
        created_at=row[4],
        embedding_model=row[5],
        metadata=dict(row[6] or {}),
        distance=None if distance is None else float(distance),
        score=float(row[8]),
        kind=row[9],
        importance=float(row[10]),
        sources=tuple(row[11] or ()),
    )
