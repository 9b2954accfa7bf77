"""Revision 0026: the text ranking reads fewer memories for common words, in pass 1 and in pass 2's fallback.

Two steps of the ranking (memagent.store.text_ranking, revisions 0016-0024) read thousands of memories in the
100,000-memory namespace of a 1M table for a question with common words (docs/benchmarks.md, "Common words
in pass 1 and in pass 2's fallback (revision 0026)"); both now read fewer, and the result is unchanged, the
exact BM25 top (tests/test_text_ranking.py):

- Pass 1 sets theta, a lower bound of the depth-th best score, by scoring the memories holding the three
  rarest query words (by bound, highest first) and, when fewer than `depth` hold all three, those holding
  two of them: (1, 2), (1, 3) and (2, 3). The pair of the second and third could be two common words: "When
  did Maria go to the beach?" scored 6,242 memories, nearly all for holding "maria" and "go", to set a theta
  that those holding "beach" and one of them set as well; "What does John like about Lebron James?" scored
  13,824 for "like" and "john", 85 of its 90 ms. The pair (2, 3) is now read only when it is expected
  (independently: df2 x df3 / n) to hold no more memories than the step after the pairs would read in its
  place (the holders of the first words, until `depth` of them: an outside read found that comparing with
  the rarest word's holders alone read more at a depth above them); otherwise, when the pairs with the
  rarest fall short of `depth`, that step runs, as it already did when the pairs fell short. Pass 1 only
  sets theta: what is read changes, never the result.
- Pass 2 reads the memories holding a set of words whose bounds sum to theta, each set its own search of
  the full-text index (revision 0021); with more than 64 sets it read every memory holding any of the
  words that can still matter (13,214 for "What was Tim's huge writing issue last week, as mentioned on
  November 6, 2023?", 95 ms). When the sets are all known (their enumeration ended below its cap), the
  index is now searched for each set's first PREFIX words (the words come by bound, highest first: mostly
  the rarest), prefixes shared by several sets once, collected in the same enumeration: a memory holding
  a set holds its prefix, so what is read still holds every memory that can reach theta, and each is
  scored for what it is worth. With more than 64 prefixes too, or an enumeration cut at its cap, the old
  fallback.
"""

from __future__ import annotations

from memagent.store import text_floor, text_kinds
from memagent.store.text_tiers import _TOO_MANY

# The words of each set pass 2 searches the index for when the sets are too many to search one by one.
PREFIX = 3

_EDITS = (
    ("    q_sets tsquery[];\n", "    q_sets tsquery[];\n    q_prefixes tsquery[];\n    held_next bigint;\n"),
    (  # the pair (2, 3) only when it is expected to hold no more than the next step would read instead
        "            q := q || (t1 && t3) || (t2 && t3);\n",
        "            q := q || (t1 && t3);\n"
        "            -- (revision 0026) The pair of the second and third only when it is expected to\n"
        "            -- hold no more memories than the step after the pairs reads when they fall short:\n"
        "            -- the holders of the rarest words, until `depth` of them.\n"
        "            held_next := 0;\n"
        "            j := 0;\n"
        "            WHILE j < m AND (j = 0 OR held_next < p_depth) LOOP\n"
        "                j := j + 1;\n"
        "                held_next := held_next + df[j];\n"
        "            END LOOP;\n"
        "            IF df[2]::float8 * df[3]::float8 / n <= held_next THEN\n"
        "                q := q || (t2 && t3);\n"
        "            END IF;\n",
    ),
    (  # each set's prefix, its first PREFIX words, beside the set
        "        WITH RECURSIVE c(last, total, gap, conj) AS (\n"
        "            SELECT g.t, b.v, b.gap, b.x FROM generate_series(n_first + 1, m) AS g(t)\n",
        "        WITH RECURSIVE c(last, total, gap, conj, words, prefix) AS (\n"
        "            SELECT g.t, b.v, b.gap, b.x, 1, b.x FROM generate_series(n_first + 1, m) AS g(t)\n",
    ),
    (
        "            SELECT h.t, c.total + b.v, least(c.gap, b.gap), c.conj && b.x\n",
        "            SELECT h.t, c.total + b.v, least(c.gap, b.gap), c.conj && b.x, c.words + 1,\n"
        f"                   CASE WHEN c.words < {PREFIX} THEN c.prefix && b.x ELSE c.prefix END\n",
    ),
    (
        "        SELECT count(*), array_agg(x.conj) FILTER (WHERE x.kept),\n"
        "               sum(octet_length(x.conj::text)) FILTER (WHERE x.kept)\n"
        "        INTO explored, q_sets, q_bytes\n"
        "        FROM (\n"
        "            SELECT c.conj, c.total >= theta\n",
        "        SELECT count(*), array_agg(x.conj) FILTER (WHERE x.kept),\n"
        "               sum(octet_length(x.conj::text)) FILTER (WHERE x.kept),\n"
        "               array_agg(x.prefix) FILTER (WHERE x.kept)\n"
        "        INTO explored, q_sets, q_bytes, q_prefixes\n"
        "        FROM (\n"
        "            SELECT c.conj, c.prefix, c.total >= theta\n",
    ),
    (  # too many sets, all of them known: the index searched for their prefixes, 64 at most
        f"    IF {_TOO_MANY} THEN\n        n_last := n_first;\n",
        f"    IF ({_TOO_MANY}) AND explored < 1000 THEN\n"
        "        -- Too many sets to search one by one, all of them known (revision 0026): the index is\n"
        "        -- searched for their first words, each prefix once; a memory holding a set holds its\n"
        "        -- prefix. (Made distinct here only: sorting them on every enumeration cost more.)\n"
        "        SELECT array_agg(DISTINCT p) INTO q_prefixes FROM unnest(q_prefixes) p;\n"
        "    ELSE\n"
        "        q_prefixes := NULL;\n"
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
