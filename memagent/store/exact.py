"""The exact ranking that completes a vector ranking the HNSW index left short (revision 0029).

A recall's vector ranking is what the index returns (memagent.store.search_sql's _NEAREST). An iterative
scan gives up after hnsw.max_scan_tuples, so a scope that is a sliver of the table (one session of a large
namespace, a small namespace planned through the index on stale statistics) can come back with fewer than
k rows though the scope holds more; the scope is then ranked exactly. That ranking used to be a branch of
every recall statement, never started otherwise but planned each time (0.26 ms of planning and about 0.8 ms
in all of a 2-3 ms vector recall on 110k x 1536: docs/benchmarks.md). It is now this function, called only
then: a function scan costs nothing to plan, and its query is planned when it runs, with the scope's values.

It runs as its caller (row-level security applies, and names resolve as in the calling statement) and
applies the scope as memagent.store.scope's Scope and View do, from the parameters the text ranking
function takes too (memagent.store.search_sql.text_params). Its query cannot use the HNSW index (partial,
`WHERE indexed`; a halfvec one is on another expression): the order is exact, by full-precision distance.
"""

from __future__ import annotations

SIGNATURE = "memagent_nearest_exact(vector, integer, text, text, timestamptz, text[], timestamptz, boolean)"

FUNCTION = r"""
CREATE FUNCTION memagent_nearest_exact(
    p_query vector, p_limit integer, p_namespace text, p_session text, p_before timestamptz,
    p_kinds text[], p_as_of timestamptz, p_archived boolean
) RETURNS SETOF memories LANGUAGE plpgsql STABLE ROWS 10 AS $fn$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT m.* FROM memories m WHERE m.namespace = $1 AND m.embedding IS NOT NULL'
        || CASE WHEN p_session IS NOT NULL THEN ' AND m.session_id = $2' ELSE '' END
        || CASE WHEN p_before IS NOT NULL THEN ' AND m.created_at < $3' ELSE '' END
        || CASE WHEN p_kinds IS NOT NULL THEN ' AND m.kind = ANY ($4)' ELSE '' END
        || CASE WHEN p_as_of IS NULL THEN ' AND m.expired_at IS NULL'
                || CASE WHEN coalesce(p_archived, false) THEN '' ELSE ' AND m.archived_at IS NULL' END
           ELSE ' AND coalesce(m.learned_at, m.created_at) <= $5'
                || ' AND (m.expired_at IS NULL OR m.expired_at > $5)'
                || CASE WHEN coalesce(p_archived, false) THEN ''
                        ELSE ' AND (m.archived_at IS NULL OR m.archived_at > $5)' END
           END
        || ' ORDER BY m.embedding <=> $6, m.id LIMIT $7'
        USING p_namespace, p_session, p_before, p_kinds, p_as_of, p_query, p_limit;
END
$fn$
"""

UPGRADE = (FUNCTION,)
DOWNGRADE = (f"DROP FUNCTION {SIGNATURE}",)

# The call, in a recall statement: the scope's `limit` nearest of all its memories, indexed or not
# (search_sql.text_params gives the scope's parameters; `query` is an expression of type vector).
CALL = (
    "memagent_nearest_exact({query}, CAST({limit} AS integer), CAST(:scope_namespace AS text),"
    " CAST(:text_session AS text), CAST(:text_before AS timestamptz), CAST(:text_kinds AS text[]),"
    " CAST(:text_as_of AS timestamptz), CAST(:text_archived AS boolean))"
)
