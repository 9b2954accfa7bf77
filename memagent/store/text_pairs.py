"""Revision 0026: the text ranking reads fewer memories for common words, in pass 1 and in pass 2's fallback.

Two steps of the ranking (memagent.store.text_ranking, revisions 0016-0024) read thousands of memories in the
100,000-memory namespace of a 1M table for a question with common words (docs/benchmarks.md, "Common words
in pass 1 and in pass 2's fallback (revision 0026)"); both now read fewer, and the result is unchanged, the
exact BM25 top (tests/test_text_ranking.py):

- Pass 1 sets theta, a lower bound of the depth-th best score, by scoring the memories holding the three
  rarest query words (by bound, highest first) and, when fewer than `depth` hold all three, those holding
  two of them: (1, 2), (1, 3) and (2, 3). The pair of the second and third could be two common words:
  "When did Maria go to the beach?" scored the 6,242 memories holding "maria" and "go" to set a theta that
  those holding "beach" and one of them set as well; "What does John like about Lebron James?" scored
  13,824 for "like" and "john", 85 of its 90 ms. The pair (2, 3) is now read only when it is expected
  (independently: df2 x df3 / n) to hold no more memories than the rarest word does; otherwise, when the
  pairs with the rarest fall short of `depth`, the next step scores the rarest words' holders, as it
  already did when pairs fell short. Pass 1 only sets theta: what is read changes, never the result.
- Pass 2 reads the memories holding a set of words whose bounds sum to theta, each set its own search of
  the full-text index (revision 0021); with more than 64 sets it read every memory holding any of the
  words that can still matter (13,214 for "What was Tim's huge writing issue last week, as mentioned on
  November 6, 2023?", 95 ms). When the sets are all known (their enumeration ended below its cap), the
  index is now searched for each set's first PREFIX words (its rarest), prefixes shared by several sets
  once: a memory holding a set holds its prefix, so what is read still holds every memory that can reach
  theta, and each is scored for what it is worth. With more than 64 prefixes too, the old fallback.
"""

from __future__ import annotations

from memagent.store import text_floor, text_kinds

# The words of each set pass 2 searches the index for when the sets are too many to search one by one.
PREFIX = 3

_TOO_MANY = "explored >= 1000 OR sets > 64 OR coalesce(q_bytes, 0) > 500000"

_EDITS = (
    (
        "            q := q || (t1 && t3) || (t2 && t3);\n",
        "            q := q || (t1 && t3);\n"
        "            IF df[2]::float8 * df[3]::float8 / n <= df[1] THEN  -- (revision 0026)\n"
        "                q := q || (t2 && t3);\n"
        "            END IF;\n",
    ),
    ("    q_sets tsquery[];\n", "    q_sets tsquery[];\n    q_prefixes tsquery[];\n"),
    (
        f"    IF {_TOO_MANY} THEN\n        n_last := n_first;\n",
        f"    IF ({_TOO_MANY}) AND explored < 1000 THEN\n"
        "        -- Too many sets to search one by one, all of them known (each word held, bound ub):\n"
        "        -- the index is searched for their first words (revision 0026); a memory holding a set\n"
        "        -- holds its prefix.\n"
        "        WITH RECURSIVE c(last, total, conj, words) AS (\n"
        "            SELECT g.t, ub[g.t], memagent_any_lexeme(ARRAY[ns_key || '/' || lex[g.t]]), 1\n"
        "            FROM generate_series(n_first + 1, m) AS g(t) WHERE suffix[g.t] >= theta\n"
        "            UNION ALL\n"
        "            SELECT h.t, c.total + ub[h.t],\n"
        f"                   CASE WHEN c.words < {PREFIX}\n"
        "                        THEN c.conj && memagent_any_lexeme(ARRAY[ns_key || '/' || lex[h.t]])\n"
        "                        ELSE c.conj END,\n"
        "                   c.words + 1\n"
        "            FROM c CROSS JOIN LATERAL generate_series(c.last + 1, m) AS h(t)\n"
        "            WHERE c.total < theta AND c.total + suffix[h.t] >= theta\n"
        "        )\n"
        "        SELECT array_agg(DISTINCT c.conj) INTO q_prefixes FROM c WHERE c.total >= theta;\n"
        "    END IF;\n"
        "    IF coalesce(array_length(q_prefixes, 1), 0) BETWEEN 1 AND 64 THEN\n"
        "        q_sets := q_prefixes;\n"
        f"    ELSIF {_TOO_MANY} THEN\n"
        "        n_last := n_first;\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0024's, reading fewer memories for common words."""
    return text_floor.edited(text_kinds.function(), _EDITS, "0026")
