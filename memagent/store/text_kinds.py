"""Revision 0024: a ranking of one kind the namespace holds few of is scored in one pass, read by its kind.

A recall of facts or summaries (`recall --kind fact`) in a large namespace of exchanges ran the pruned
ranking over the namespace's matches and dropped every exchange among them for its kind: in the 100k
namespace of a 1M table, a facts-only hybrid recall of a namespace holding none took 8-20 ms, nearly all of
it the text side. Now, when the namespace holds at most SMALL memories of the kinds asked for (a count
bounded at SMALL + 1, read through revision 0022's (namespace, kind) index), the ranking scores every one of
them holding a query word, in one pass, as it does for a small namespace. The statistics stay the
namespace's, as in every scoped ranking, so the scores are the ones the pruned path gives. The count is
dynamic SQL (revision 0025): as static SQL its plan was cached per session, and the generic plan PostgreSQL
switched to at the sixth call scanned the whole table.
"""

from __future__ import annotations

from memagent.store import text_floor, text_tiers
from memagent.store.text_ranking import SMALL

_EDITS = (
    ("    tiered boolean := true;\n", "    tiered boolean := true;\n    few boolean := false;\n"),
    (
        "    scoring := format(\n",
        "    -- Few memories of the kinds asked for (revision 0024): score every one holding a query\n"
        "    -- word, in one pass, read through the (namespace, kind) index, however large the namespace.\n"
        "    -- (EXECUTE: planned for these values each time; a cached generic plan could scan the table.)\n"
        f"    IF n > {SMALL} AND p_kinds IS NOT NULL THEN\n"
        f"        EXECUTE 'SELECT count(*) <= {SMALL} FROM (SELECT 1 FROM memories k'\n"
        f"                ' WHERE k.namespace = $1 AND k.kind = ANY ($2) LIMIT {SMALL + 1}) c'\n"
        "            INTO few USING p_namespace, p_kinds;\n"
        "    END IF;\n"
        "    scoring := format(\n",
    ),
    (
        f"        CASE WHEN n <= {SMALL} AND EXISTS (",
        "        CASE WHEN few\n"
        "             THEN 'm.namespace = $1 AND m.kind = ANY ($10) AND (m.content_tsv @@ $5) IS TRUE'\n"
        f"             WHEN n <= {SMALL} AND EXISTS (",
    ),
    (f"    IF n <= {SMALL} THEN\n", f"    IF n <= {SMALL} OR few THEN\n"),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0021's, few memories of a kind in one pass."""
    return text_floor.edited(text_tiers.function(), _EDITS, "0024")
