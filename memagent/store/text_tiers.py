"""Revision 0021: the full-text index tells a word said once from a word said more often.

Pass 2 of the ranking reads the memories that can still reach the threshold (theta): those holding a set of
query words whose upper bounds sum to theta. A word's bound was that of its most favourable memory (its
highest count in one memory, the shortest memory holding it): for a common word about 1.8 times what it is
worth in most memories, which hold it once in an ordinary-length text. So sets that nearly no memory can
really reach were read whole: "What kind of art does Caroline make?" in a 100,000-memory namespace scored
5,223 memories to find its top 50, 65 of the ranking's 80 ms.

The index's function now also keys each word a memory holds more than once under a second prefix
(`<namespace key>+word`, beside `<namespace key>/word`). Pass 2's sets then take each word either as held
(bound `ub1`: its weight held once, in the shortest memory holding it) or as held more than once (bound
`ub`, as before); a memory's bound is the sum over the words it holds at its own counts, so every memory
that can reach theta holds one of the sets, and a memory holding common words once qualifies only if their
weights held once reach theta. Over 60 LoCoMo questions in that namespace, the memories pass 2 must read
fell 3 to 9 times for the slowest ones (docs/benchmarks.md, "Words said more than once"). Each set is now
searched on its own (`@@ ANY` of them): one tsquery OR-ing them all made GIN read every word's posting list
whole. With too many sets, 0020's sets, then its fallback.

Bounds are summed in another order than a score, and with bounds this tight a memory scoring exactly theta
(or above it by a rounding) could fall one unit of the last bit short and go unread (an outside review's
case; the edge was 0020's too, rarer): theta is lowered by a relative 1e-12 before pass 2, so such a memory
is read. The result is the exact BM25 top (tests/test_text_ranking.py, tests/test_text_tiers.py).

The statistics are unchanged (the shortest memory holding a word bounds both). The index is rebuilt once
(its entries change; writes wait meanwhile); words said once, most of them, add nothing to it.
"""

from __future__ import annotations

from memagent.store import text_floor, text_passes, text_terms
from memagent.store.text_terms import _KEY, LONGEST

# The index's function, replaced in place (the index is rebuilt in the same revision).
NS_LEXEMES_TIERED = f"""
CREATE OR REPLACE FUNCTION memagent_ns_lexemes(p_namespace text, p_tsv tsvector) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT array_to_tsvector(ARRAY(
        SELECT k.key || CASE WHEN s.again THEN '+' ELSE '/' END || t.lexeme
        FROM (SELECT {_KEY} AS key) k
        CROSS JOIN unnest(p_tsv) t
        CROSS JOIN LATERAL (VALUES (false), (true)) s(again)
        WHERE octet_length(t.lexeme) <= {LONGEST}
            AND (NOT s.again OR coalesce(array_length(t.positions, 1), 1) > 1)
    ))
$fn$
"""

# Revision 0017's, for the downgrade.
NS_LEXEMES_PLAIN = text_terms.NS_LEXEMES_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)

REINDEX = "REINDEX INDEX ix_memories_ns_lexemes"

# A query word's choices in pass 2's sets: held (the plain key, which every holder has; bound ub1, what
# the word weighs in a memory holding it once), or held more than once (the second key; bound ub; gap: what
# it adds over ub1), the latter only where it bounds higher and the former falls short (a memory holding
# it more than once is then in the former's set). Untiered (too many sets that way): held, bound ub, as
# before revision 0021.
_CHOICES = """CROSS JOIN LATERAL (
                SELECT CASE WHEN tiered THEN ub1[{t}] ELSE ub[{t}] END, NULL::float8,
                       memagent_any_lexeme(ARRAY[ns_key || '/' || lex[{t}]])
                UNION ALL
                SELECT ub[{t}], ub[{t}] - ub1[{t}], memagent_any_lexeme(ARRAY[ns_key || '+' || lex[{t}]])
                WHERE tiered AND ub[{t}] > ub1[{t}] AND {total}ub1[{t}] < theta
            ) b(v, gap, x)"""

_TOO_MANY = "explored >= 1000 OR sets > 64 OR coalesce(q_bytes, 0) > 500000"

_PASS_2 = (
    "    -- Pass 2's sets, of the namespace's keys (revision 0021). A set holding a word more than once is\n"
    "    -- left out when that word held at all reaches theta as well: that set, kept, holds its memories.\n"
    "    -- Each set is its own search of the index (one OR of them all reads every posting list whole).\n"
    f"    ns_key := {_KEY};\n"
    "    LOOP\n"
    "        WITH RECURSIVE c(last, total, gap, conj) AS (\n"
    "            SELECT g.t, b.v, b.gap, b.x FROM generate_series(n_first + 1, m) AS g(t)\n"
    "            " + _CHOICES.format(t="g.t", total="") + "\n"
    "            WHERE suffix[g.t] >= theta\n"
    "            UNION ALL\n"
    "            SELECT h.t, c.total + b.v, least(c.gap, b.gap), c.conj && b.x\n"
    "            FROM c CROSS JOIN LATERAL generate_series(c.last + 1, m) AS h(t)\n"
    "            " + _CHOICES.format(t="h.t", total="c.total + ") + "\n"
    "            WHERE c.total < theta AND c.total + suffix[h.t] >= theta\n"
    "        )\n"
    "        SELECT count(*), array_agg(x.conj) FILTER (WHERE x.kept),\n"
    "               sum(octet_length(x.conj::text)) FILTER (WHERE x.kept)\n"
    "        INTO explored, q_sets, q_bytes\n"
    "        FROM (\n"
    "            SELECT c.conj, c.total >= theta\n"
    "                       AND NOT coalesce(c.total - c.gap >= theta * (1 + 1e-9), false) AS kept\n"
    "            FROM c LIMIT 1000  -- the recursion stops there\n"
    "        ) x;\n"
    "        sets := coalesce(array_length(q_sets, 1), 0);\n"
    f"        EXIT WHEN NOT tiered OR NOT ({_TOO_MANY});\n"
    "        tiered := false;  -- too many sets: each word held, bound ub\n"
    "    END LOOP;\n"
    f"    IF {_TOO_MANY} THEN\n"
    "        n_last := n_first;\n"
    "        WHILE n_last < m AND suffix[n_last + 1] >= theta LOOP\n"
    "            n_last := n_last + 1;\n"
    "        END LOOP;\n"
    "        q_sets := ARRAY[memagent_ns_query(p_namespace, memagent_any_lexeme(lex[n_first + 1:n_last]))];\n"
    "    END IF;\n"
    "    more_ids := NULL;  -- (not an earlier step's, already merged into ids)\n"
    "    more_scores := NULL;\n"
    "    IF q_sets[1] IS NOT NULL THEN  -- no set of the remaining terms reaches theta: nothing to read\n"
    "        EXECUTE replace(scoring, 'memagent_ns_query($1, $5)', 'ANY ($5)') INTO more_ids, more_scores\n"
    "            USING p_namespace, lex, idf, avgdl, q_sets, p_session, p_before, p_depth, done,"
    " p_kinds, p_as_of;\n"
    "    END IF;\n"
)

_EDITS = (
    (
        "one of the minimal such sets of terms (an OR of ANDs, which the\n    -- GIN index intersects); with",
        "one of the sets of terms whose bounds reach it\n    -- (each an AND the GIN index intersects:"
        " revision 0021's, below); with",
    ),
    (  # a memory's bounds are summed in another order than its score: one at theta must not fall short
        "    theta := greatest(theta, p_floor * coalesce(best, 0));\n",
        "    theta := greatest(theta, p_floor * coalesce(best, 0));\n"
        "    theta := theta * (1 - 1e-12);  -- (what ties theta, or beats it by a rounding, is read)\n",
    ),
    (
        "    ub double precision[];\n",
        "    ub double precision[];\n    ub1 double precision[];\n    ns_key text;\n"
        "    tiered boolean := true;\n    q_sets tsquery[];\n    q_bytes bigint;\n",
    ),
    (
        "array_agg(t.df ORDER BY t.ub DESC, t.lexeme)\n    INTO lex, idf, ub, df\n",
        "array_agg(t.df ORDER BY t.ub DESC, t.lexeme),\n"
        "           array_agg(t.ub1 ORDER BY t.ub DESC, t.lexeme)\n"
        "    INTO lex, idf, ub, df, ub1\n",
    ),
    (  # a word's bound in a memory holding it once: tf 1 in the shortest memory holding it
        " / avgdl)) AS ub\n",
        " / avgdl)) AS ub,\n"
        "               w.idf * 1::float8 * 2.2 / (1::float8 + 1.2 * (1 - 0.75 + 0.75 * s.min_dl / avgdl))"
        " AS ub1\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: revision 0020's, pass 2 over the two keys."""
    sql = text_passes.function()
    start = sql.index("    WITH RECURSIVE c(last, total, conj) AS (\n")  # pass 2's sets, to its reading
    end = sql.index("    best := greatest(best, more_scores[1]);\n", start)
    return text_floor.edited(sql, (*_EDITS, (sql[start:end], _PASS_2)), "0021")
