"""Revision 0016: the text ranking can keep only memories scoring at least a share of the best one.

The exact BM25 top `depth` of revision 0011 has a worst case that a memory layer meets often: a query whose
rarer words fewer than `depth` memories hold, beside a word that nearly every memory holds (the user's name,
"question", "said"). Completing the top `depth` then means scoring every memory of the namespace, each for
almost nothing (a word in every memory of N adds idf ln(1 + 0.5 / (N + 0.5)) to a score); at 20,000
memories that was a chat turn's ~100 ms (docs/benchmarks.md, "A chat turn's own overhead"). Ranks that far
down add little to a fusion, and a memory that matches the query only by such words is not a text match.

So the ranking takes a ninth argument, p_floor, and returns the BM25 top `depth` among the memories scoring
at least p_floor times the best score, still exactly (tests/test_text_ranking.py compares it with BM25 over
every memory, so filtered), and the floor prunes: a memory holding none of the rarest n query terms scores
at most the sum of the other terms' bounds (suffix[n + 1]); once that falls below p_floor times the best
score found so far, those memories are not read at all, and pass 2's threshold is at least p_floor times
that best. With nothing scored yet when pass 1 would widen to the rarest terms holding `depth` memories, it
scores those holding the rarest term first, to have a best score to set the floor by (with a floor).

Hybrid recall asks for FLOOR (memagent.store.search.recall_statement); a pruned memory can still come from
its vector side. Asking for 0, the exact top `depth` as before: text mode (so also the fallback while the
query cannot be embedded), and every recall whose results are filtered afterwards, since a memory dropped
then could have set the floor: a maximum distance, and item search (memagent.usecases.items).

Also: the query words' statistics are read by one probe of their key each. As a join, the planner could
choose (and did, with the statistics table not yet analysed) to read every word of the namespace: 2.3 of a
recall's milliseconds at 20,000 memories.

The function is revision 0013's (memagent.store.text_ranking) with the edits below, each applied to exactly
one place; revisions 0011 and 0013 keep creating their own versions unchanged.
"""

from __future__ import annotations

from memagent.store import text_ranking

# Hybrid recall's floor, a fifth of the best score: on the LoCoMo dev part hybrid recall is a little better
# (docs/benchmarks.md), and a word that most memories hold no longer makes memories holding only it
# candidates.
FLOOR = 0.2

SIGNATURE = (
    "memagent_text_ranking(text, text, timestamptz, text, integer, text[], timestamptz, boolean,"
    " double precision)"
)

_STEP3_BEFORE = """    IF coalesce(array_length(ids, 1), 0) < p_depth THEN
        LOOP
            n_first := n_first + 1;
            held := held + df[n_first];
            EXIT WHEN held >= p_depth OR n_first = m;
        END LOOP;
        q := memagent_any_lexeme(lex[1:n_first]);
        EXECUTE scoring INTO more_ids, more_scores
            USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done{view_using};
        SELECT b.ids, b.scores INTO ids, scores
        FROM memagent_best(ids, scores, more_ids, more_scores, p_depth) b;
        IF n_first = m THEN
            RETURN QUERY SELECT * FROM unnest(ids, scores);  -- every memory matching the query was scored
            RETURN;
        END IF;
        done := CASE WHEN done IS NULL THEN q ELSE done || q END;
    END IF;
"""

_STEP3_AFTER = """    -- Nothing scored yet (no memory holds two of the rarest terms): the memories
    -- holding the rarest term, for a best score to set the floor by.
    IF ids IS NULL AND m > 1 AND p_floor > 0 THEN
        EXECUTE scoring INTO ids, scores
            USING p_namespace, lex, idf, avgdl, t1, p_session, p_before, p_depth, done{view_using};
        done := CASE WHEN done IS NULL THEN t1 ELSE done || t1 END;
        n_first := 1;
        held := df[1];
    END IF;
    -- Every memory holding one of the first n_first terms is scored; the others score at most
    -- suffix[n_first + 1], and below the floor they are not read.
    IF coalesce(array_length(ids, 1), 0) < p_depth AND suffix[n_first + 1] >= {floor} * coalesce(scores[1], 0)
    THEN
        n_start := n_first;
        LOOP
            n_first := n_first + 1;
            held := held + df[n_first];
            EXIT WHEN held >= p_depth OR n_first = m
                OR suffix[n_first + 1] < {floor} * coalesce(scores[1], 0);
        END LOOP;
        q := memagent_any_lexeme(lex[n_start + 1:n_first]);
        EXECUTE scoring INTO more_ids, more_scores
            USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done{view_using};
        SELECT b.ids, b.scores INTO ids, scores
        FROM memagent_best(ids, scores, more_ids, more_scores, p_depth) b;
        done := CASE WHEN done IS NULL THEN q ELSE done || q END;
    END IF;
    best := scores[1];
    IF n_first = m OR suffix[n_first + 1] < {floor} * coalesce(best, 0) THEN
        -- every memory that can reach the floor was scored
        RETURN QUERY SELECT * FROM unnest(ids, scores) AS u(i, s) WHERE u.s >= {floor} * best;
        RETURN;
    END IF;
"""

_EDITS = (
    ("p_archived boolean\n)", "p_archived boolean,\n    p_floor double precision\n)"),
    (  # a floor outside 0-1 (or none) is no floor, or everything's
        "BEGIN\n    -- It runs as its owner",
        "BEGIN\n    p_floor := least(greatest(coalesce(p_floor, 0), 0), 1);\n    -- It runs as its owner",
    ),
    (  # a long query whose term sets would make a tsquery over 1 MB: the rarest terms instead
        "    q := q_text::tsquery;\n    IF explored >= 1000 OR sets > 64 THEN",
        "    IF explored >= 1000 OR sets > 64 OR octet_length(q_text) > 500000 THEN",
    ),
    (
        "        q := memagent_any_lexeme(lex[1:n_last]);\n    END IF;\n",
        "        q := memagent_any_lexeme(lex[1:n_last]);\n"
        "    ELSE\n        q := q_text::tsquery;\n    END IF;\n",
    ),
    (  # each query word's statistics by one probe of their key, whatever the planner's row estimates say
        "        JOIN memory_term_stats s"
        " ON s.namespace = p_namespace AND s.lexeme = q.lexeme AND s.df > 0\n",
        "        CROSS JOIN LATERAL (\n"
        "            SELECT x.lexeme, x.df, x.max_tf, x.min_dl FROM memory_term_stats x\n"
        "            WHERE x.namespace = p_namespace AND x.lexeme = q.lexeme AND x.df > 0 LIMIT 1\n"
        "        ) s\n",
    ),
    (
        "    visible text;\nBEGIN\n",
        "    visible text;\n    best double precision;\n    n_start integer;\nBEGIN\n",
    ),
    (  # the per-term bounds' suffix sums, before pass 1 (pass 2 computes them again: the same values)
        "    m := array_length(lex, 1);\n",
        "    m := array_length(lex, 1);\n"
        "    suffix := array_fill(0::float8, ARRAY[m + 1]);\n"
        "    FOR i IN REVERSE m..1 LOOP\n"
        "        suffix[i] := suffix[i + 1] + ub[i];\n"
        "    END LOOP;\n",
    ),
    (  # a small namespace, scored whole
        "        RETURN QUERY SELECT * FROM unnest(ids, scores);\n"
        "        RETURN;\n    END IF;\n    -- Pass 1",
        "        RETURN QUERY SELECT * FROM unnest(ids, scores) AS u(i, s)"
        " WHERE u.s >= {floor} * scores[1];\n"
        "        RETURN;\n    END IF;\n    -- Pass 1",
    ),
    (_STEP3_BEFORE, _STEP3_AFTER),
    (
        "        theta := scores[p_depth];\n    END IF;\n",
        "        theta := scores[p_depth];\n    END IF;\n"
        "    theta := greatest(theta, {floor} * coalesce(best, 0));\n",
    ),
    (
        "    RETURN QUERY SELECT * FROM unnest(ids, scores)"
        " UNION ALL SELECT * FROM unnest(more_ids, more_scores)\n"
        "        ORDER BY 2 DESC, 1 LIMIT p_depth;\n",
        "    best := greatest(best, more_scores[1]);\n"
        "    RETURN QUERY SELECT * FROM (\n"
        "        SELECT * FROM unnest(ids, scores) AS u(i, s)\n"
        "        UNION ALL SELECT * FROM unnest(more_ids, more_scores)\n"
        "    ) b WHERE b.s >= {floor} * best ORDER BY 2 DESC, 1 LIMIT p_depth;\n",
    ),
)


def edited(sql: str, edits: tuple[tuple[str, str], ...], revision: str) -> str:
    """sql with each (before, after) edit applied to the one place `before` occurs."""
    for before, after in edits:
        if sql.count(before) != 1:
            raise AssertionError(f"the ranking's SQL changed where {revision} edits it: {before[:60]!r}")
        sql = sql.replace(before, after)
    return sql


def function() -> str:
    """CREATE FUNCTION memagent_text_ranking: revision 0013's eight arguments and p_floor."""
    edits = tuple(
        (
            before.replace("{view_using}", text_ranking.VIEW_USING),
            after.replace("{view_using}", text_ranking.VIEW_USING).replace("{floor}", "p_floor"),
        )
        for before, after in _EDITS
    )
    return edited(text_ranking.function(view=True), edits, "0016")
