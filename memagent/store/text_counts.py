"""Revision 0033: a word a memory says more than once is counted by ts_rank_cd, not by a subquery.

Revision 0032 scores a memory with a term per query word: 0 when ts_rank says the memory does not hold the
word, the weight of one occurrence when ts_rank is that of one position, and else (the word said more
than once) a subquery that filters the memory's tsvector to the word, unnests it and counts its positions.
That subquery is a plan of its own for every word of the query, made each time the scoring statement is
(EXECUTE plans it on every call): for a five-word chat message, 0.4 of the statement's 0.7-1.0 ms of
planning, where running it took 0.08 (EXPLAIN's summary, the chat benchmark's namespace). And it runs for
every memory that says a word twice.

ts_rank_cd of a one-word query with every weight 1 is the number of positions the memory keeps for the
word: each occurrence is a cover of its own, worth 1 (PostgreSQL's calc_rank_cd: the cover's length over
the sum of its positions' inverse weights, over 1 + its noise, 0), summed exactly (a whole number in
float8, at most 256: a tsvector keeps no more positions per word). So the count is
`ts_rank_cd('{1,1,1,1}', v, 'word')::float8`, the same number the subquery counted (tests compare every
score bit for bit with the statement before 0032's), in an expression the planner needs no subplan for.
The branch is reached only when ts_rank is neither 0 nor one position's value, so a word stored without
positions (counted once; ts_rank_cd would say 0) never gets there.
"""

from __future__ import annotations

from memagent.store import text_covered, text_floor
from memagent.store.text_inline import _WEIGHT

# The word's count in the memory (format()'s quoting: '' for ', %2$L the word as a tsquery literal).
_COUNT = "ts_rank_cd(''{1,1,1,1}''::float4[], f.v, %2$L::tsquery)::float8"

_EDITS = (
    (
        f"            ' ELSE (SELECT {_WEIGHT.format(tf='u.tf')}'\n"
        "            ' FROM (SELECT coalesce(array_length(t.positions, 1), 1)::float8 AS tf'\n"
        "            ' FROM unnest(ts_filter(setweight(setweight(f.v, ''D''), ''A'', $2[%1$s:%1$s]),'\n"
        "            ' ''{a}'')) t) u)'\n",
        f"            ' ELSE {_WEIGHT.format(tf=_COUNT)}'\n",
    ),
    (
        "    -- weight said once when ts_rank is that of one position, else the subquery for that word;\n",
        "    -- weight said once when ts_rank is that of one position, else (revision 0033) its weight\n"
        "    -- for the count of positions ts_rank_cd gives;\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0032's, a word said more than once counted by
    ts_rank_cd."""
    return text_floor.edited(text_covered.function(), _EDITS, "0033")
