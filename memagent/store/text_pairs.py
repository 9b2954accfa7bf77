"""Revision 0026: pass 1 of the text ranking no longer reads a pair of common words to set theta.

Pass 1 sets theta, a lower bound of the depth-th best score, by scoring memories likely to score high: those
holding the three rarest query words (revision 0019's order: by bound, highest first); when fewer than
`depth` hold all three, those holding two of them: (1, 2), (1, 3) and (2, 3). The pair of the second and
third could be two common words: "When did Maria go to the beach?" in the 100,000-memory namespace of a 1M
table scored the 6,242 memories holding "maria" and "go" (44-148 ms) to set a theta that the memories
holding "beach" and one of them set as well; "What does John like about Lebron James?" scored 13,824 for
"like" and "john" (85 ms of a 90 ms ranking). The pair (2, 3) is now read only when it is expected to hold
no more memories than the rarest word does (independently: df2 x df3 / n <= df1); otherwise, when pairs
(1, 2) and (1, 3) fall short of `depth`, the next step scores the rarest words' holders, as it already did
when the pairs fell short. Pass 1 only sets theta: what is read changes, never the result (the exact BM25
top; tests/test_text_ranking.py). Figures: docs/benchmarks.md, "A pair of common words (revision 0026)".
"""

from __future__ import annotations

from memagent.store import text_floor, text_kinds

_EDITS = (
    (
        "            q := q || (t1 && t3) || (t2 && t3);\n",
        "            q := q || (t1 && t3);\n"
        "            IF df[2]::float8 * df[3]::float8 / n <= df[1] THEN  -- (revision 0026)\n"
        "                q := q || (t2 && t3);\n"
        "            END IF;\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0024's, pass 1 without a pair of common words."""
    return text_floor.edited(text_kinds.function(), _EDITS, "0026")
