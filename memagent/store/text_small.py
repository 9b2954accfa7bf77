"""Revision 0018: a small namespace's text ranking reads only the memories holding a query word.

Up to SMALL memories, the ranking scores every match in one pass (no pruning). Until now it found them by
reading the whole namespace through its btree index and testing each memory's words: with revision
0011's (namespace, words) index a common word's entries, across every namespace, outnumbered a small
namespace's memories. Revision 0017's index keys each word by its namespace, so that reason is gone: the
index gives a small namespace's matches directly. In the 1,000-memory namespace of a 1,000,000-memory
table, a question's ranking read 245 pages instead of 1,010 (the memories holding its words, 230, and the
index) and took 2.0 ms instead of 3.7 (docs/benchmarks.md).

A query holding a word longer than text_terms.LONGEST (left out of the index) still reads the namespace, so
that in a small namespace such a word is searched, as before.
"""

from __future__ import annotations

from memagent.store import text_floor, text_terms
from memagent.store.text_ranking import SMALL

_EDITS = (
    (  # the namespace is read whole only for a word the index does not hold
        f"CASE WHEN n <= {SMALL} THEN 'm.namespace = $1 AND (m.content_tsv @@ $5) IS TRUE'",
        f"CASE WHEN n <= {SMALL} AND EXISTS (\n"
        f"                 SELECT 1 FROM unnest(lex) x WHERE octet_length(x) > {text_terms.LONGEST})\n"
        "             THEN 'm.namespace = $1 AND (m.content_tsv @@ $5) IS TRUE'",
    ),
    (
        "        -- A small namespace: read its memories by the namespace index and score every match,"
        " in one pass.\n"
        "        -- (Cheaper than through the full-text index, at this size.)\n",
        "        -- A small namespace: score every memory holding a query word, in one pass (found through\n"
        "        -- the full-text index; by reading the namespace for a word too long for the index).\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0017's, small namespaces through the index."""
    return text_floor.edited(text_terms.function(), _EDITS, "0018")
