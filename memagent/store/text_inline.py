"""Revision 0032, part 1: a memory's score is one expression of the query's words, not a subquery per memory.

Every step of the ranking scores its candidates with the same statement; since revision 0011 a memory's
score was a subquery per memory: its tsvector filtered to the query's words (setweight, ts_filter),
unnested into rows (lexeme, positions), and summed. Scoring 5,000 memories of the 1M table for an
eight-word query that way cost ~27 ms over reading them (~10 ms), most of it the subquery and the rows
unnest builds (an array of positions for each word). With up to 32 words the score is now one expression
with a term per word, in the order of the memory's own words (the order the sum took), each term:

    CASE ts_rank('{1,1,1,1}', m.content_tsv, 'word')
        WHEN 0 THEN 0                    -- the memory does not hold it
        WHEN <the same for a memory holding it once> THEN <its weight said once>
        ELSE <the subquery as before, for this word only>   -- said more than once: rare
    END

ts_rank of a one-word query with every weight 1 is 0 exactly when the memory does not hold the word, and
otherwise depends only on how many positions the memory keeps for it; its value for one position is a
constant the planner folds (ts_rank is immutable), so "held once" is one comparison, and any other count
takes the exact path. Each term is the arithmetic it was (the same operations on the same values, so the
same bits; a word not held adds 0, which changes no sum): tests/test_text_tiers.py compares the ranking's
scores bit for bit with the old statement over every memory. 5,000 memories: 37 → 25 ms. More than 32
words, and the statement would grow past what it saves to plan; it keeps the subquery.
"""

from __future__ import annotations

from memagent.store import text_floor, text_order

# The largest query (in distinct words the namespace holds) scored by one expression.
WORDS = 32

_SUBQUERY = """    SELECT m.id, (
        SELECT sum($3[array_position($2, u.lexeme)]
                   * u.tf * 2.2 / (u.tf + 1.2 * (1 - 0.75 + 0.75 * length(m.content_tsv) / $4)))
        FROM (
            SELECT t.lexeme, coalesce(array_length(t.positions, 1), 1)::float8 AS tf
            FROM unnest(ts_filter(setweight(m.content_tsv, 'A', $2), '{a}')) t
        ) u
    ) AS score
"""

_EDITS = (
    (_SUBQUERY, "    SELECT m.id, %s AS score\n"),
    ("$sql$,\n        CASE WHEN few", "$sql$,\n        score_sql,\n        CASE WHEN few"),
    ("    n_start integer;\n", "    n_start integer;\n    score_sql text;\n"),
    (
        "    m := array_length(lex, 1);\n",
        "    m := array_length(lex, 1);\n"
        "    -- A memory's score (revision 0032): with few words, a term per word in the order of\n"
        "    -- the memory's own (bytewise), each 0 when the memory does not hold the word (ts_rank 0), its\n"
        "    -- weight said once when ts_rank is that of one position, else the subquery for that word.\n"
        f"    IF m <= {WORDS} THEN\n"
        "        SELECT '(' || string_agg(format(\n"
        "            'CASE ts_rank(''{1,1,1,1}''::float4[], m.content_tsv, %2$L::tsquery) WHEN 0 THEN 0'\n"
        "            ' WHEN ts_rank(''{1,1,1,1}''::float4[], ''x:1''::tsvector, ''x''::tsquery)'\n"
        "            ' THEN $3[%1$s] * 1::float8 * 2.2'\n"
        "            ' / (1::float8 + 1.2 * (1 - 0.75 + 0.75 * length(m.content_tsv) / $4))'\n"
        "            ' ELSE (SELECT $3[%1$s] * u.tf * 2.2'\n"
        "            ' / (u.tf + 1.2 * (1 - 0.75 + 0.75 * length(m.content_tsv) / $4))'\n"
        "            ' FROM (SELECT coalesce(array_length(t.positions, 1), 1)::float8 AS tf'\n"
        "            ' FROM unnest(ts_filter(setweight(m.content_tsv, ''A'', $2[%1$s:%1$s]),'\n"
        "            ' ''{a}'')) t) u)'\n"
        "            ' END',\n"
        "            g.k, memagent_any_lexeme(lex[g.k:g.k])::text), ' + ' ORDER BY lex[g.k] COLLATE \"C\")\n"
        "            || ')'\n"
        "        INTO score_sql FROM generate_subscripts(lex, 1) AS g(k);\n"
        "    ELSE\n"
        "        score_sql := $s$(\n"
        + _SUBQUERY.split("(\n", 1)[1].rsplit("    ) AS score\n", 1)[0]
        + "    )$s$;\n"
        "    END IF;\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0031's, a memory's score one expression."""
    return text_floor.edited(text_order.function(), _EDITS, "0032")
