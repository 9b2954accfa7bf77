"""SQL for text and hybrid recall: BM25 over PostgreSQL full-text search, fused with the vector ranking.

PostgreSQL's own ts_rank has no inverse document frequency, so a name that appears in every memory of a
conversation would count as much as a rare word. The text ranking is BM25, computed by the database
function memagent_text_ranking over statistics kept at write time (memagent.store.text_ranking). The query
is the OR of the message's lexemes (plainto_tsquery would require all of them).

Hybrid recall runs both rankings — the vector side as the exact `ORDER BY embedding <=> :q LIMIT n` the HNSW
index serves — and fuses them by reciprocal rank fusion: score = w_v / (c + rank_vector) + w_t / (c +
rank_text). In one statement (hybrid_sql), or split across two connections (memagent.store.search_split):
the same rows.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from memagent.store import exact, hnsw
from memagent.store.hnsw import IndexKind
from memagent.store.scope import View

# Reciprocal rank fusion: the textbook constant is 60; on the LoCoMo dev part (docs/benchmarks.md) 3-8 with
# the text ranking weighted 1-2 work best, because the top few ranks carry most of the signal here; 3 since
# the text ranking took its statistics from the namespace (revision 0011).
RRF_C = 3

# BM25's top `depth` in scope, computed in the database from statistics kept at write time
# (memagent.store.text_ranking, revision 0011).
_TEXT_CALL = """memagent_text_ranking(
        CAST(:scope_namespace AS text), CAST(:text_session AS text), CAST(:text_before AS timestamptz),
        CAST(:qtext AS text), CAST(:depth AS integer), CAST(:text_kinds AS text[]),
        CAST(:text_as_of AS timestamptz), CAST(:text_archived AS boolean), CAST(:text_floor AS float8)
    ) r"""
_TEXT_RANKING = f"""
txt AS MATERIALIZED (
    SELECT r.id, r.score, row_number() OVER (ORDER BY r.score DESC, r.id) AS rank
    FROM {_TEXT_CALL}
)"""

_VECTOR_RANKING = """
vec AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank
    FROM nearest
)"""

# The k nearest in scope as the HNSW index serves them (`ORDER BY key <=> query LIMIT n`), with the scope's
# memories the index does not hold yet (stored since their indexing step: revision 0028,
# memagent.store.deferred; a few at most, found by their partial b-tree and ranked exactly), unless the
# index scan came back short: an iterative scan gives up after hnsw.max_scan_tuples, so a scope that is a
# sliver of the table (a small namespace the planner sent through the index on stale statistics, one session
# of a large namespace) can leave it with fewer than n rows that pass the filter. Then, and only then (the
# count is a one-time filter: the function is never called otherwise), the scope is ranked exactly, indexed
# or not, by memagent_nearest_exact (memagent.store.exact: a function scan is not planned as the table scan
# it runs would be). nearest_index is MATERIALIZED, as pgvector advises for relaxed order: what the index
# scan returns is then sorted for real wherever it is ranked; as a plain subquery the planner took its order
# as given (an incremental sort on the id alone), so hybrid's vector ranks followed the order the scan
# returned rows in, not their distance.
_NEAREST = """
query_vector AS MATERIALIZED (SELECT CAST(:qvec AS vector) AS v),
nearest_index AS MATERIALIZED (
    SELECT {columns}, m.embedding <=> (SELECT v FROM query_vector) AS distance
    FROM memories m
    WHERE {scope} AND m.embedding IS NOT NULL AND m.indexed
    ORDER BY {order}
    LIMIT {limit}
),
nearest AS (
    (SELECT * FROM nearest_index WHERE (SELECT count(*) FROM nearest_index) >= {limit}
     UNION ALL
     SELECT {columns}, m.embedding <=> (SELECT v FROM query_vector) AS distance
     FROM memories m
     WHERE (SELECT count(*) FROM nearest_index) >= {limit} AND {scope} AND NOT m.indexed
       AND m.embedding IS NOT NULL
     ORDER BY distance, id LIMIT {limit})
    UNION ALL
    SELECT {columns}, m.embedding <=> (SELECT v FROM query_vector) AS distance
    FROM {exact} m
    WHERE (SELECT count(*) FROM nearest_index) < {limit}
)"""

# Every recall statement returns these columns, in this order (memagent.store.search reads them by position).
RESULT_COLUMNS = (
    "id",
    "namespace",
    "session_id",
    "content",
    "created_at",
    "embedding_model",
    "metadata",
    "distance",
    "score",
    "kind",
    "importance",
    "sources",
)

# The ids of the memories a fact or summary came from (revision 0013), for the memory `alias` names.
_SOURCES = "ARRAY(SELECT s.source_id FROM memory_sources s WHERE s.memory_id = {alias}.id ORDER BY 1)"

# The settings a recall statement runs under (LOCAL: they end with its transaction). Iterative scan keeps an
# index scan going until enough rows pass the scope's filter (relaxed order: the final ORDER BY sorts them).
# No parallel workers and no JIT: a recall reads a few thousand rows at most. (When the exact ranking that
# completes a short index scan was a branch of every statement, costed as if it ran, the planner put it
# under a Gather whose workers started, ~6 ms on the 1M table, before its one-time filter said it had
# nothing to do, and a large namespace's recall crossed jit_above_cost; that ranking, a function now
# (memagent.store.exact), runs its query under these settings too.)
# Floats in full precision (a database may set extra_float_digits lower): hybrid's sides come back to the
# client and are fused from what it sends back, which must be what the server computed.
SETTINGS = {
    "hnsw.iterative_scan": "relaxed_order",
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "extra_float_digits": "3",
}

# Reciprocal rank fusion of the two sides. A sum over the union rather than a full join: the planner then
# looks each of the (at most 2 x depth) memories up by its key, where a join on coalesce(vec.id, txt.id)
# made it scan the namespace.
_FUSED = """fused AS MATERIALIZED (
    SELECT parts.id, sum(parts.score) AS score FROM (
        SELECT vec.id, CAST(:w_vector AS float8) / (CAST(:rrf_c AS float8) + vec.rank) AS score
        FROM vec
        UNION ALL
        SELECT txt.id, CAST(:w_text AS float8) / (CAST(:rrf_c AS float8) + txt.rank) AS score
        FROM txt
    ) parts GROUP BY parts.id
)"""

# A fact or summary is supported by the memories it came from: their scores among the candidates add to its
# own (the exchange that said it and the fact both match: the fact is the better answer). `own` keeps the
# score it earned by itself; `links`, how many of its sources are candidates (_BEST_CANDIDATES). The scores
# are summed in the order of their ids: in whatever order a plan gave them, the sum could differ in its last
# bit from one plan to another (hybrid's one statement and its split forms: memagent.usecases.checked).
_SUPPORTED = """
ranked AS MATERIALIZED (
    SELECT f.id, f.score AS own, f.score + coalesce(sup.total, 0) AS score, sup.links
    FROM fused f CROSS JOIN LATERAL (
        SELECT sum(src.score ORDER BY src.id) AS total, count(*) AS links
        FROM memory_sources s JOIN fused src ON src.id = s.source_id
        WHERE s.memory_id = f.id
    ) sup
)"""

# An exchange leaves the result when a fact or summary that came from it ranks above it by its own score (not
# its support): the fact stands for it and names it in its sources, and the place goes to something else.
# Only then: a fact that matches less than its source does not hide it (the source may say more), facts
# never hide each other, an archived memory (asked for with --include-archived) is never hidden, and with
# a distance cut-off a fact beyond it hides nothing.
_FINAL = f"""
SELECT m.id, m.namespace, m.session_id, m.content, m.created_at, m.embedding_model, m.metadata,
       m.embedding <=> {{query}} AS distance, ranked.score, m.kind, m.importance,
       {_SOURCES.format(alias="m")} AS sources
FROM {{candidates}} ranked JOIN memories m ON m.id = ranked.id
WHERE (m.kind <> 'exchange' OR (CAST(:text_archived AS boolean) AND m.archived_at IS NOT NULL) OR NOT EXISTS (
    SELECT 1 FROM memory_sources s JOIN ranked better ON better.id = s.memory_id
    JOIN memories bm ON bm.id = better.id AND bm.kind <> 'exchange'
    WHERE s.source_id = ranked.id
      AND (better.own > ranked.own OR (better.own = ranked.own AND better.id < ranked.id)){{better_filter}}
)){{distance_filter}}
ORDER BY ranked.score DESC, m.id
LIMIT :k"""

_VECTOR = f"""
WITH {{nearest}}
SELECT id, namespace, session_id, content, created_at, embedding_model, metadata, distance,
       1 - distance AS score, kind, importance, {_SOURCES.format(alias="nearest")} AS sources
FROM nearest
{{distance_filter}}
ORDER BY distance, id"""

# What a recall statement checked against the embedding space adds: the space in force, read in the same
# snapshot as the memories it returns (one row even when nothing matched; none if the space was never
# claimed).
_CHECKED = """
SELECT found.*,
       space.model AS space_model, space.dimension AS space_dimension, space.index_kind AS space_index
FROM embedding_space space
LEFT JOIN ({statement}
) found ON true
ORDER BY {order}"""


@lru_cache(maxsize=64)
def recall_sql(
    mode: str, scope: str, *, max_distance: bool, index: IndexKind | None, dim: int, checked: bool
) -> str:
    """The one statement of a recall (without SETTINGS): RESULT_COLUMNS, best first.

    vector: the k nearest in scope, as the HNSW index serves them (`ORDER BY key <=> query LIMIT k` on the
    expression the index is built on: memagent.store.hnsw; exactly when its scan comes back short:
    _NEAREST), sorted exactly (the iterative scan's relaxed order may be slightly off); score = 1 - cosine
    distance. text: BM25; hybrid: both fused.
    checked: the embedding space's model, dimension and index kind follow as three more columns.
    """
    if mode == "vector":
        columns = "m.id, m.namespace, m.session_id, m.content, m.created_at, m.embedding_model, m.metadata, "
        statement = _VECTOR.format(
            nearest=_nearest(scope, columns + "m.kind, m.importance", ":k", index, dim),
            distance_filter="WHERE distance <= CAST(:max_distance AS float8)" if max_distance else "",
        )
        order = "found.distance, found.id"
    elif mode == "hybrid":
        statement = hybrid_sql(scope, max_distance=max_distance, index=index, dim=dim)
        order = "found.score DESC, found.id"
    else:
        statement = text_sql(scope, max_distance=max_distance)
        order = "found.score DESC, found.id"
    return _CHECKED.format(statement=statement, order=order) if checked else statement


def text_sql(scope: str, *, max_distance: bool) -> str:
    """Top-k memories by BM25 (the scope reaches memagent_text_ranking as parameters: text_params)."""
    return f"WITH {_TEXT_RANKING},\nfused AS (SELECT id, score FROM txt),{_SUPPORTED}" + _final(
        max_distance, "CAST(:qvec AS vector)"
    )


def hybrid_sql(scope: str, *, max_distance: bool, index: IndexKind | None = "vector", dim: int = 0) -> str:
    """Top-k memories by reciprocal rank fusion of the vector and BM25 rankings.

    The vector side is _NEAREST's `depth` nearest (the index scan orders by the expression the HNSW index
    is built on: memagent.store.hnsw); the distance it ranks by, reports and filters on is always the
    full-precision one.
    """
    vector = _nearest(scope, "m.id", ":depth", index, dim) + "," + _VECTOR_RANKING
    # The query vector the vector side parsed once (query_vector) serves the final distances too (see
    # _nearest: a second copy cost ~0.2 ms at 1536 dimensions).
    return f"WITH {vector},{_TEXT_RANKING},\n{_FUSED},{_SUPPORTED}" + _final(
        max_distance, "(SELECT v FROM query_vector)"
    )


def _nearest(scope: str, columns: str, limit: str, index: IndexKind | None, dim: int) -> str:
    """The CTEs that leave `nearest`: `columns` and the full-precision distance of the `limit` memories of the
    scope nearest the query (_NEAREST). The query vector is sent (and parsed by the server) once, in
    `query_vector`: over psycopg2 each copy of a 1536-dimension vector in the statement is 19 KB to send
    and parse, ~0.2 ms (docs/benchmarks.md; asyncpg sends it once as a parameter anyway). With a halfvec
    index the index scan orders by its own expression (the one the index is built on); with the vector index
    by the distance itself."""
    if index == "halfvec":
        query = hnsw.query_expression(index, dim, "(SELECT v FROM query_vector)")
        order = f"{hnsw.key_expression(index, dim, 'm.embedding')} <=> {query}"
    else:
        order = "distance"
    call = exact.CALL.format(query="(SELECT v FROM query_vector)", limit=limit)
    return _NEAREST.format(columns=columns, scope=scope, order=order, limit=limit, exact=call)


# The candidates whose rows the final step reads, best first. Only an exchange that a fact or summary among
# the candidates came from can leave the result (_FINAL), so the best k, and one more for each such link,
# hold the k it returns: their rows are read, not those of all the (up to 2 x depth) candidates. With a
# distance cut-off, which may drop any of them, all are read.
# The links are counted where the support is summed (_SUPPORTED: one index probe per candidate); a count
# over memory_sources joined to the candidates could be planned as a scan of every namespace's links.
_BEST_CANDIDATES = """(
    SELECT * FROM ranked ORDER BY score DESC, id
    LIMIT CAST(:k AS bigint) + CAST((SELECT coalesce(sum(links), 0) FROM ranked) AS bigint)
)"""


def _final(max_distance: bool, query: str) -> str:
    """_FINAL with the query vector as `query` (an expression), filtered by distance when max_distance."""
    better = (
        f"\n      AND (SELECT d.embedding <=> {query} FROM memories d WHERE d.id = better.id)"
        " <= CAST(:max_distance AS float8)"
    )
    return _FINAL.format(
        query=query,
        candidates="ranked" if max_distance else _BEST_CANDIDATES,
        distance_filter=f"\n  AND (m.embedding <=> {query}) <= :max_distance" if max_distance else "",
        better_filter=better if max_distance else "",
    )


def text_params(
    namespace: str, session_id: str | None, before: Any, view: View, floor: float = 0.0
) -> dict[str, Any]:
    """Bind parameters of the text ranking's scope and view (the same as the vector side's: Scope.sql; the
    exact vector ranking, memagent.store.exact, takes them too), and its floor (memagent.store.text_floor:
    the hybrid side's; 0, the exact top, for text mode)."""
    return {
        "text_floor": float(floor),
        "scope_namespace": namespace,
        "text_session": session_id,
        "text_before": before,
        "text_kinds": None if view.kinds is None else list(view.kinds),
        "text_as_of": view.as_of,
        "text_archived": view.archived,
    }


def fusion_params(w_vector: float = 1.0, w_text: float = 1.0, c: int = RRF_C) -> dict[str, Any]:
    """Bind parameters of the fusion."""
    return {"w_vector": float(w_vector), "w_text": float(w_text), "rrf_c": float(c)}
