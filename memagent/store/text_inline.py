"""Revision 0032, part 1: a memory's score is one expression of the query's words, not a subquery per memory.

Every step of the ranking scores its candidates with the same statement; since revision 0011 a memory's
score was a subquery per memory: its tsvector filtered to the query's words (setweight, ts_filter),
unnested into rows (lexeme, positions), and summed. Scoring 5,000 memories of the 1M table for an
eight-word query that way cost ~27 ms over reading them (~10 ms), most of it the subquery and the rows
unnest builds (an array of positions for each word). With up to 32 words the score is now one expression
with a term per word, in the order of the memory's own words (the order the sum took), each term:

    CASE ts_rank('{1,1,1,1}', v, 'word')
        WHEN 0 THEN 0                    -- the memory does not hold it
        WHEN <the same for a memory holding it once> THEN <its weight said once>
        ELSE <the subquery as before, for this word only>   -- said more than once: rare
    END

ts_rank of a one-word query with every weight 1 is 0 exactly when the memory does not hold the word, and
otherwise depends only on how many positions the memory keeps for it; its value for one position is a
constant the planner folds (ts_rank is immutable), so "held once" is one comparison, and any other count
takes the exact path. Each term is the arithmetic it was (the same operations on the same values, so the
same bits; a word not held adds 0, which changes no sum): tests/test_text_tiers.py compares the ranking's
scores bit for bit with the old statement over every memory. `v` is the memory's tsvector as stored when
it is under 2 kB and not compressed (every term reads it in place), else its query words alone, filtered
once per memory (every term would decompress a compressed one again: an outside review measured the
first version of this at 17.8 → 28.7 ms for 544 such memories). (A word stored without positions would
count once here and not at all in the old statement, which filtered such words out; content_tsv is
to_tsvector's, which always keeps positions.) 5,000 short memories: 37 → 27 ms. More than 32 words, and
the statement would grow past what it saves to plan; it keeps the subquery.
"""

from __future__ import annotations

from memagent.store import text_floor, text_order

# The largest query (in distinct words the namespace holds) scored by one expression.
WORDS = 32

_STATEMENT = """    SELECT m.id, (
        SELECT sum($3[array_position($2, u.lexeme)]
                   * u.tf * 2.2 / (u.tf + 1.2 * (1 - 0.75 + 0.75 * length(m.content_tsv) / $4)))
        FROM (
            SELECT t.lexeme, coalesce(array_length(t.positions, 1), 1)::float8 AS tf
            FROM unnest(ts_filter(setweight(m.content_tsv, 'A', $2), '{a}')) t
        ) u
    ) AS score
    FROM memories m
    WHERE %s AND ($9 IS NULL OR NOT m.content_tsv @@ $9) %s
    ORDER BY score DESC, m.id
    LIMIT $8
"""

# The candidates' vectors and lengths read once each (OFFSET 0: kept a subquery, not folded into each term),
# then scored.
_SCORED = """    SELECT f.id, %s AS score
    FROM (
        SELECT m.id, %s AS v, length(m.content_tsv) AS dl
        FROM memories m
        WHERE %s AND ($9 IS NULL OR NOT m.content_tsv @@ $9) %s
        OFFSET 0
    ) f
    ORDER BY score DESC, f.id
    LIMIT $8
"""

# More than WORDS words: the old score, over the subquery's columns.
_OLD_SCORE = (
    _STATEMENT[len("    SELECT m.id, ") : _STATEMENT.index(" AS score\n")]
    .replace("length(m.content_tsv)", "f.dl")
    .replace("m.content_tsv", "f.v")
)

# A term's weight, word i said tf times (SQL, in format()'s quoting; dl the memory's length).
_WEIGHT = "$3[%1$s] * {tf} * 2.2 / ({tf} + 1.2 * (1 - 0.75 + 0.75 * f.dl / $4))"

_EDITS = (
    (_STATEMENT, _SCORED),
    ("$sql$,\n        CASE WHEN few", "$sql$,\n        score_sql, tsv_sql,\n        CASE WHEN few"),
    ("    n_start integer;\n", "    n_start integer;\n    score_sql text;\n    tsv_sql text;\n"),
    (
        "    m := array_length(lex, 1);\n",
        "    m := array_length(lex, 1);\n"
        "    -- A memory's score (revision 0032): with few words, a term per word in the order of the\n"
        "    -- memory's own (bytewise), each 0 when the memory does not hold the word (ts_rank 0), its\n"
        "    -- weight said once when ts_rank is that of one position, else the subquery for that word;\n"
        "    -- over the memory's tsvector as stored when it is small and plain, else over the query's\n"
        "    -- words of it (a compressed one would be decompressed by every term).\n"
        f"    IF m <= {WORDS} THEN\n"
        "        SELECT '(' || string_agg(format(\n"
        "            'CASE ts_rank(''{1,1,1,1}''::float4[], f.v, %2$L::tsquery) WHEN 0 THEN 0'\n"
        "            ' WHEN ts_rank(''{1,1,1,1}''::float4[], ''x:1''::tsvector, ''x''::tsquery)'\n"
        f"            ' THEN {_WEIGHT.format(tf='1::float8')}'\n"
        f"            ' ELSE (SELECT {_WEIGHT.format(tf='u.tf')}'\n"
        "            ' FROM (SELECT coalesce(array_length(t.positions, 1), 1)::float8 AS tf'\n"
        "            ' FROM unnest(ts_filter(setweight(setweight(f.v, ''D''), ''A'', $2[%1$s:%1$s]),'\n"
        "            ' ''{a}'')) t) u)'\n"
        "            ' END',\n"
        "            g.k, memagent_any_lexeme(lex[g.k:g.k])::text), ' + ' ORDER BY lex[g.k] COLLATE \"C\")\n"
        "            || ')'\n"
        "        INTO score_sql FROM generate_subscripts(lex, 1) AS g(k);\n"
        "        tsv_sql := 'CASE WHEN pg_column_size(m.content_tsv) < 2048'\n"
        "            ' AND pg_column_compression(m.content_tsv) IS NULL THEN m.content_tsv'\n"
        "            ' ELSE ts_filter(setweight(m.content_tsv, ''A'', $2), ''{a}'') END';\n"
        "    ELSE\n"
        f"        score_sql := $s${_OLD_SCORE}$s$;\n"
        "        tsv_sql := 'm.content_tsv';\n"
        "    END IF;\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0031's, a memory's score one expression."""
    return text_floor.edited(text_order.function(), _EDITS, "0032")
