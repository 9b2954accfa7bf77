"""Revision 0019: fewer statements in the text ranking's passes, and none that can find nothing new.

Each step of memagent_text_ranking is a dynamic statement that PostgreSQL plans anew (0.2-0.4 ms each for
the scoring statement), and a chat turn's ranking ran four of them. Two changes, both keeping the result the
exact BM25 top `depth` (above the floor; tests/test_text_ranking.py):

- When the query's rarest terms are rare (together held by at most RARE_ROWS memories), pass 1 scores every
  memory holding one of them in one statement, instead of those holding all three, then two, then the
  rarest alone: the same memories at most, a threshold at least as high, one statement where there were
  up to three.
- Pass 2 looked for candidates among sets of terms that include terms whose every holder pass 1 had
  already scored (the first n_first): those memories were read again from the heap and dropped as already
  done. Every memory not yet scored holds none of those terms, so its possible score is bounded by the
  other terms alone: pass 2 now builds its sets from those only, and stops when they cannot reach the
  threshold, or when no set can (nothing is read; the first version of this revision then returned the
  previous step's rows a second time, found by an outside review: revision 0020 re-creates the function).
"""

from __future__ import annotations

from memagent.store import text_floor, text_small

# Pass 1 scores the holders of the rarest terms at once when there are at most this many of them.
RARE_ROWS = 200

_EDITS = (
    (
        "    IF m >= 3 THEN\n        q := t1 && t2 && t3;\n",
        "    -- Rare enough, the rarest terms' holders are all scored at once.\n"
        "    WHILE n_first < least(m, 3) AND held + df[n_first + 1] <= {rare} LOOP\n"
        "        n_first := n_first + 1;\n"
        "        held := held + df[n_first];\n"
        "    END LOOP;\n"
        "    IF n_first > 0 THEN\n"
        "        done := memagent_any_lexeme(lex[1:n_first]);\n"
        "        EXECUTE scoring INTO ids, scores\n"
        "            USING p_namespace, lex, idf, avgdl, done, p_session, p_before, p_depth, NULL::tsquery,"
        " p_kinds, p_as_of;\n"
        "    ELSIF m >= 3 THEN\n"
        "        q := t1 && t2 && t3;\n",
    ),
    (
        "    IF m >= 2 AND coalesce(array_length(ids, 1), 0) < p_depth THEN\n",
        "    IF n_first = 0 AND m >= 2 AND coalesce(array_length(ids, 1), 0) < p_depth THEN\n",
    ),
    (
        "    IF ids IS NULL AND m > 1 AND p_floor > 0 THEN\n",
        "    IF n_first = 0 AND ids IS NULL AND m > 1 AND p_floor > 0 THEN\n",
    ),
    (  # (after the rare terms, there may be none left to widen to)
        "    IF coalesce(array_length(ids, 1), 0) < p_depth"
        " AND suffix[n_first + 1] >= p_floor * coalesce(scores[1], 0)\n"
        "    THEN\n",
        "    IF coalesce(array_length(ids, 1), 0) < p_depth AND n_first < m\n"
        "        AND suffix[n_first + 1] >= p_floor * coalesce(scores[1], 0)\n"
        "    THEN\n",
    ),
    (  # pass 2 starts after the terms whose holders are all scored
        "    theta := greatest(theta, p_floor * coalesce(best, 0));\n",
        "    theta := greatest(theta, p_floor * coalesce(best, 0));\n"
        "    IF suffix[n_first + 1] < theta THEN\n"
        "        -- no memory left unscored can reach the threshold\n"
        "        RETURN QUERY SELECT * FROM unnest(ids, scores) AS u(i, s) WHERE u.s >= p_floor * best;\n"
        "        RETURN;\n"
        "    END IF;\n",
    ),
    (
        "FROM generate_series(1, m) AS g(t)\n",
        "FROM generate_series(n_first + 1, m) AS g(t)\n",
    ),
    (
        "        n_last := 0;\n",
        "        n_last := n_first;\n",
    ),
    (
        "        q := memagent_any_lexeme(lex[1:n_last]);\n",
        "        q := memagent_any_lexeme(lex[n_first + 1:n_last]);\n",
    ),
    (
        "    EXECUTE scoring INTO more_ids, more_scores\n"
        "        USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done,"
        " p_kinds, p_as_of;\n"
        "    best := greatest(best, more_scores[1]);\n",
        "    more_ids := NULL;  -- (not an earlier step's, already merged into ids)\n"
        "    more_scores := NULL;\n"
        "    IF q IS NOT NULL THEN  -- no set of the remaining terms reaches theta: nothing to read\n"
        "        EXECUTE scoring INTO more_ids, more_scores\n"
        "            USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done,"
        " p_kinds, p_as_of;\n"
        "    END IF;\n"
        "    best := greatest(best, more_scores[1]);\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: revision 0018's with fewer, fuller passes."""
    edits = tuple((before, after.replace("{rare}", str(RARE_ROWS))) for before, after in _EDITS)
    return text_floor.edited(text_small.function(), edits, "0019")
