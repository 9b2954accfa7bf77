"""Revision 0017: the full-text index keys every word by its namespace.

Revision 0011's GIN index on (namespace, content_tsv) (PostgreSQL's btree_gin) holds a namespace as one
key and each word as another, across every namespace of the table. A search for a set of words in a
namespace intersects the namespace's posting list (every memory of it) with each word's (every memory of
the table holding it): in a 1,000,000-memory table, finding the 5,279 memories of a 100,000-memory
namespace holding one of five pairs of a question's words took 38 ms in the index alone, before a single
row was read (EXPLAIN ANALYZE, docs/benchmarks.md).

Here the index holds each word once per namespace: memagent_ns_lexemes(namespace, content_tsv) is the
memory's tsvector with every word prefixed by a short hash of its namespace, and a search rewrites its
tsquery the same way (memagent_ns_query), so the index reads only the query words' entries of that
namespace. The hash (8 hex digits of SHA-256; md5 is refused by FIPS builds) is only a key: two namespaces
sharing one would read each other's entries and drop them on the row's own namespace check, nothing more.
Words longer than LONGEST bytes (no language has them; base64 or a minified blob does) are left out of the
index, and a query's such words are not searched where the index is used (namespaces over SMALL memories),
so that the prefixed word stays under PostgreSQL's 2,047-byte limit. Both functions run with search_path
pinned to pg_catalog: an index's entries must not depend on the writer's path.

No extension is needed (btree_gin was, and without it the index held the words alone). The index keeps
revision 0016's fastupdate off. The ranking is revision 0016's (memagent.store.text_floor) with the edits
below. The namespace is checked on each candidate row rather than through its own index: ANDed with the
namespace's whole posting list (100,000 rows), the bitmap of the same search took 101 ms instead of 22.
"""

from __future__ import annotations

from memagent.store import text_floor
from memagent.store.text_ranking import SMALL

LONGEST = 2000
# A namespace's key in the index: 8 hex digits of SHA-256 (md5 is refused by FIPS builds of PostgreSQL).
_KEY = "left(encode(sha256(convert_to(p_namespace, 'UTF8')), 'hex'), 8)"

# The index's function (revision 0021 replaces it: memagent.store.text_tiers).
NS_LEXEMES_FUNCTION = f"""
CREATE FUNCTION memagent_ns_lexemes(p_namespace text, p_tsv tsvector) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT array_to_tsvector(ARRAY(
        SELECT {_KEY} || '/' || l
        FROM unnest(tsvector_to_array(p_tsv)) l
        WHERE octet_length(l) <= {LONGEST}
    ))
$fn$"""

FUNCTIONS = f"""{NS_LEXEMES_FUNCTION};
CREATE FUNCTION memagent_ns_query(p_namespace text, p_query tsquery) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT regexp_replace(
        p_query::text, $re$'((?:[^']|'')*)'$re$, $r$'$r$ || {_KEY} || $r$/\\1'$r$, 'g'
    )::tsquery
$fn$;
"""

# The index's function: memagent_app writes memories, and PostgreSQL checks its right to run it on every
# write (PUBLIC has it unless a database revokes it by default): memagent.store.roles grants it.
NS_LEXEMES = "memagent_ns_lexemes(text, tsvector)"
NS_QUERY = "memagent_ns_query(text, tsquery)"

INDEX = (
    "CREATE INDEX ix_memories_ns_lexemes ON memories"
    " USING gin (memagent_ns_lexemes(namespace, content_tsv)) WITH (fastupdate = off)"
)

_EDITS = (
    (  # the namespace and the candidates' condition come together
        "    WHERE m.namespace = $1 AND %s AND ($9 IS NULL",
        "    WHERE %s AND ($9 IS NULL",
    ),
    (  # candidates through the namespace's own entries; the namespace checked on each row, not by its index
        f"CASE WHEN n <= {SMALL} THEN '(m.content_tsv @@ $5) IS TRUE' ELSE 'm.content_tsv @@ $5' END",
        f"CASE WHEN n <= {SMALL} THEN 'm.namespace = $1 AND (m.content_tsv @@ $5) IS TRUE'\n"
        "             ELSE '(m.namespace = $1) IS TRUE"
        " AND memagent_ns_lexemes(m.namespace, m.content_tsv) @@ memagent_ns_query($1, $5)' END",
    ),
    (  # a word too long for the index is not searched where the index is used
        "            WHERE x.namespace = p_namespace AND x.lexeme = q.lexeme AND x.df > 0 LIMIT 1\n",
        "            WHERE x.namespace = p_namespace AND x.lexeme = q.lexeme AND x.df > 0\n"
        f"                AND (n <= {SMALL} OR octet_length(x.lexeme) <= {LONGEST}) LIMIT 1\n",
    ),
    (
        "        -- (The full-text index holds every namespace:"
        " a common word's entries would outnumber them.)\n",
        "        -- (Cheaper than through the full-text index, at this size.)\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: revision 0016's, searching the namespaced index."""
    sql = text_floor.edited(text_floor.function(), _EDITS, "0017")
    return sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
