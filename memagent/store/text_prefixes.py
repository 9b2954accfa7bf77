"""Revision 0030: pass 2 searches the full-text index by the first three words its sets share, however few.

Pass 2 of the ranking reads the memories holding one of the sets of query words whose bounds reach theta,
each set an AND the GIN index intersects, one search per set. Revision 0026 searched each set's first
three words instead (each such prefix once; a memory holding a set holds its prefix) only when there were
more than 64 sets. But an AND of common words costs the index about as much as its rarest word's postings,
however few memories hold it all: in the 1M table's 100,000-memory namespace "How often does John get to
see sunsets like the one he shared with Maria?" took 52 sets, the longest of six words, "one & get & see
& like & maria & john" 3.3 ms for 19 memories, all of them 46 ms for 1,038. Sets sharing their first three
words are now searched by them, each such prefix once, whenever the sets are all known (up to 64 searches;
more, and the fallback is 0026's). A prefix reads the memories holding it and none of its sets too (their
bound stays under theta: scored, never in the top), and when its words nearly always go together those
can be thousands (an outside review's case: three words held together by 6,020 memories, the set's fourth
word by 20 of them); so a set alone with its prefix is searched whole, as before: sharing is what pays
for the prefix. The result is unchanged: the exact BM25 top (tests/test_text_prefixes.py). On 900 LoCoMo
questions in that namespace, 0027's function and this one in turn, the same results: p95 33.2 → 29.0 and
31.5 → 27.4 ms with every set searched by its prefix; the rule for a set alone gives back about 0.5 ms
of the mean (docs/benchmarks.md).
"""

from __future__ import annotations

from memagent.store import text_floor, text_repeats

_EDITS = (
    (
        "    IF (explored >= 1000 OR sets > 64 OR coalesce(q_bytes, 0) > 500000) AND explored < 1000 THEN\n"
        "        -- Too many sets to search one by one, all of them known (revision 0026): the index is\n"
        "        -- searched for their first words, each prefix once; a memory holding a set holds its\n"
        "        -- prefix. (Made distinct here only: sorting them on every enumeration cost more.)\n",
        "    IF explored < 1000 THEN\n"
        "        -- The sets all known (revision 0030; 0026's for more than 64 sets only): sets sharing\n"
        "        -- their first three words are searched by those words, each such prefix once (a memory\n"
        "        -- holding a set holds its prefix); a set alone with its prefix is searched whole (its\n"
        "        -- first words may go together far more often than apart).\n",
    ),
    (
        "        SELECT array_agg(DISTINCT p) INTO q_prefixes FROM unnest(q_prefixes) p;\n",
        "        SELECT array_agg(g.q) INTO q_prefixes FROM (\n"
        "            SELECT CASE WHEN count(*) > 1 THEN p.prefix ELSE (array_agg(p.conj))[1] END AS q\n"
        "            FROM unnest(q_prefixes, q_sets) AS p(prefix, conj) GROUP BY p.prefix\n"
        "        ) g;\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0027's, pass 2 searching its sets' prefixes."""
    return text_floor.edited(text_repeats.function(), _EDITS, "0030")
