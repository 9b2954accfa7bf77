"""Hybrid recall split across two connections: its two sides at once, the rows search_sql.hybrid_sql gives.

HybridSplit holds the statements (their SQL below) and builds the ones that take a side's rows back;
memagent.usecases.checked runs them, the text side on a recall thread (memagent.store.unit.run_aside).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from memagent.store.hnsw import IndexKind
from memagent.store.search_sql import (
    _CHECKED,
    _FUSED,
    _SUPPORTED,
    _TEXT_CALL,
    _VECTOR_RANKING,
    _final,
    _nearest,
)


# The two sides at the same time on two connections (memagent.usecases.checked): the
# text side alone (text_side_sql); when it is done before the vector side starts (it started before the query
# was embedded), the vector side and the fusion in one statement over its rows (given_text_sql); otherwise
# the vector side alone (vector_side_sql), then both sides' rows fused (given_sides_sql). The rows given back
# go as arrays and are fused as hybrid_sql fuses them: the same ranks, the same rows.
def text_side_sql() -> str:
    """Hybrid's text side alone: BM25's top `depth` in scope (id, score, the snapshot it read: _GONE), in no
    particular order."""
    return f"SELECT r.id, r.score, {_SNAPSHOT} FROM {_TEXT_CALL}"


@lru_cache(maxsize=64)
def vector_side_sql(scope: str, *, index: IndexKind | None, dim: int) -> str:
    """Hybrid's vector side alone: the `depth` nearest in scope (id, full-precision distance, the snapshot it
    read: _GONE), unordered."""
    nearest = _nearest(scope, "m.id", ":depth", index, dim)
    return f"WITH {nearest}\nSELECT id, distance, {_SNAPSHOT} FROM nearest"


# The sides' rows, given back. Each side ran in a transaction of its own, so a memory one of them found may
# since have been deleted, expired or archived: those no longer in scope (`gone`) are not ranked (none are,
# when nothing changed meanwhile: the ranks one statement gives), so that the final step still finds k rows.
# (A join to the memories in scope, in place of `gone`, made the planner expect one row of each side, and
# plan the support step for two: 4 ms instead of 0.3 in the 1k namespace of a 1M table.)
# Each side gives back the snapshot it read (pg_current_snapshot: the statement's own, which a STABLE
# function's queries share); when every side's equals this statement's, no transaction that wrote (that
# holds an id) ended in between, so this statement sees the very rows the sides saw (the scope is the rows
# and the parameters: no clock) and none can be gone: the check is not run (a third of the fusion's time,
# 0.4-0.8 ms of a chat turn's recall). Not on a server in recovery (a hot standby, a read replica): there a
# snapshot lists the running transactions where pg_current_snapshot does not print them (an outside review
# saw the text stay the same while a row expired), so a side read there says so, and this statement, read
# there, always checks.
_SNAPSHOT = (
    "CASE WHEN pg_is_in_recovery() THEN 'in recovery'"
    " ELSE CAST(pg_current_snapshot() AS text) END AS snapshot"
)
_GONE = """
gone AS MATERIALIZED (
    SELECT CASE WHEN {same} THEN CAST('{{}}' AS bigint[]) ELSE (
        SELECT coalesce(array_agg(g.id), '{{}}') FROM unnest({ids}) AS g(id)
        WHERE NOT EXISTS (SELECT 1 FROM memories m WHERE m.id = g.id AND {scope})
    ) END AS ids
    FROM (SELECT CASE WHEN NOT pg_is_in_recovery() THEN CAST(pg_current_snapshot() AS text) END AS now) s
)"""
# a side that found nothing gave back no snapshot (NULL): it has nothing that could be gone; `now` is NULL
# in recovery, and the check runs
_SAME_TEXT = "coalesce(CAST(:txt_snapshot AS text), s.now) = s.now"
_SAME_VECTOR = "coalesce(CAST(:vec_snapshot AS text), s.now) = s.now"

_GIVEN_VECTOR = """
vec AS (
    SELECT v.id, row_number() OVER (ORDER BY v.distance, v.id) AS rank
    FROM unnest(CAST(:vec_ids AS bigint[]), CAST(:vec_distances AS float8[])) AS v(id, distance)
    WHERE v.id <> ALL (CAST((SELECT ids FROM gone) AS bigint[]))
),
query_vector AS MATERIALIZED (SELECT CAST(:qvec AS vector) AS v)"""

_GIVEN_TEXT = """
txt AS MATERIALIZED (
    SELECT r.id, r.score, row_number() OVER (ORDER BY r.score DESC, r.id) AS rank
    FROM unnest(CAST(:txt_ids AS bigint[]), CAST(:txt_scores AS float8[])) AS r(id, score)
    WHERE r.id <> ALL (CAST((SELECT ids FROM gone) AS bigint[]))
)"""


@lru_cache(maxsize=64)
def given_sides_sql(scope: str, *, max_distance: bool, checked: bool) -> str:
    """hybrid_sql's fusion and final rows over sides computed beforehand (vec_ids and vec_distances,
    txt_ids and txt_scores), those still in scope."""
    ids, same = "CAST(:txt_ids AS bigint[]) || CAST(:vec_ids AS bigint[])", f"{_SAME_TEXT} AND {_SAME_VECTOR}"
    gone = _GONE.format(same=same, ids=ids, scope=scope)
    statement = f"WITH {gone},{_GIVEN_VECTOR},{_GIVEN_TEXT},\n{_FUSED},{_SUPPORTED}" + _final(
        max_distance, "(SELECT v FROM query_vector)"
    )
    return _CHECKED.format(statement=statement, order="found.score DESC, found.id") if checked else statement


@lru_cache(maxsize=64)
def given_text_sql(
    scope: str, *, max_distance: bool, index: IndexKind | None, dim: int, checked: bool
) -> str:
    """hybrid_sql with its text side computed beforehand (txt_ids and txt_scores, those still in scope): the
    vector side, the fusion and the final rows in one statement."""
    gone = _GONE.format(same=_SAME_TEXT, ids="CAST(:txt_ids AS bigint[])", scope=scope)
    vector = _nearest(scope, "m.id", ":depth", index, dim) + "," + _VECTOR_RANKING
    statement = f"WITH {gone},{vector},{_GIVEN_TEXT},\n{_FUSED},{_SUPPORTED}" + _final(
        max_distance, "(SELECT v FROM query_vector)"
    )
    return _CHECKED.format(statement=statement, order="found.score DESC, found.id") if checked else statement


@dataclass(frozen=True)
class HybridSplit:
    """A hybrid recall in two or three statements: the text side alone (text_sql, with the recall statement's
    parameters and settings, on a connection of its own), then with_text(...) over its rows, or, when those
    are not in yet, the vector side alone (vector_sql) and fused(...) over both sides' rows — the rows the
    one statement gives (RecallStatement.with_text and .fused; memagent.usecases.checked runs them)."""

    text_sql: str
    vector_sql: str
    given_sides_sql: str  # the fusion, both sides' rows given
    given_text_sql: str  # the vector side and the fusion, the text side's rows given
    # vector_sql and given_text_sql go prepared, their namespace and depth written in (memagent.store.keyed)
    vector_prepare: bool = False

    @staticmethod
    def rows(
        vector_rows: Sequence[Sequence[Any]] = (), text_rows: Sequence[Sequence[Any]] = ()
    ) -> dict[str, str | None]:
        """The parameters that give the statements a side's rows back (vector: id, distance; text: id, score;
        each with the snapshot its side read, None when it found nothing).

        As array literals ('{1,2}', cast in the statement): as ARRAY[1, 2] expressions, psycopg2's form for a
        list, PostgreSQL took ~1 ms longer to parse 200 values than to run the fusion. (repr() writes a float
        PostgreSQL reads back exactly.)"""
        return {
            "vec_ids": _array(int(row[0]) for row in vector_rows),
            "vec_distances": _array(float(row[1]) for row in vector_rows),
            "vec_snapshot": str(vector_rows[0][2]) if vector_rows else None,
            "txt_ids": _array(int(row[0]) for row in text_rows),
            "txt_scores": _array(float(row[1]) for row in text_rows),
            "txt_snapshot": str(text_rows[0][2]) if text_rows else None,
        }


def _array(values: Iterable[float]) -> str:
    """A PostgreSQL array literal of numbers."""
    return "{" + ",".join(map(repr, values)) + "}"
