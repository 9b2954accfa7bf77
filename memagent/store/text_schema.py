"""What revisions 0011 to 0021, 0024, 0026, 0027 and 0030 to 0033 run for full-text recall: the statistics
(memagent.store.text_stats), the ranking function (memagent.store.text_ranking), its helpers, and who may
call or touch them."""

from __future__ import annotations

from memagent.store import (
    text_counts,
    text_covered,
    text_floor,
    text_kinds,
    text_order,
    text_pairs,
    text_passes,
    text_prefixes,
    text_ranking,
    text_repeats,
    text_small,
    text_stats,
    text_terms,
    text_tiers,
)

# A definer's function resolves names in its own schema only (then pg_temp), never in the caller's path.
_DEFINERS = (
    text_ranking.SIGNATURE,
    "memagent_text_stats_insert()",
    "memagent_text_stats_delete()",
    "memagent_text_stats_update()",
)


# The functions that run as their owner resolve names in their own schema only (then pg_temp), never in the
# caller's path; only memagent_app (and the owner) may call the ranking, and nobody else touches the
# statistics: memagent_app has no privilege on them at all (the triggers write them as their owner).
def _pin(definers: tuple[str, ...]) -> str:
    return (
        "DO $$\nBEGIN\n"
        + "".join(
            f"    EXECUTE format('ALTER FUNCTION {function} SET search_path = %I, pg_temp',"
            " current_schema());\n"
            for function in definers
        )
        + f"    REVOKE EXECUTE ON FUNCTION {definers[0]} FROM PUBLIC;\n"
        + "    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memagent_app') THEN\n"
        + f"        GRANT EXECUTE ON FUNCTION {definers[0]} TO memagent_app;\n"
        + "    END IF;\n"
        + "END\n$$"
    )


_PIN = _pin(_DEFINERS)


def _replacing(create: str) -> str:
    """A CREATE FUNCTION statement as CREATE OR REPLACE (the same signature: owner and grants are kept)."""
    return create.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


# A tsquery matching any of the lexemes, built without parsing them again (they are stemmed already); the
# best `depth` of two ranked lists.
_ANY_LEXEME = r"""
CREATE FUNCTION memagent_any_lexeme(lexemes text[]) RETURNS tsquery LANGUAGE sql IMMUTABLE AS $fn$
    SELECT string_agg('''' || replace(replace(x, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery
    FROM unnest(lexemes) x
$fn$;
CREATE FUNCTION memagent_best(
    ids bigint[], scores double precision[], more_ids bigint[], more_scores double precision[], depth integer
) RETURNS TABLE (ids bigint[], scores double precision[]) LANGUAGE sql IMMUTABLE AS $fn$
    SELECT array_agg(b.id ORDER BY b.score DESC, b.id), array_agg(b.score ORDER BY b.score DESC, b.id)
    FROM (
        SELECT a.id, a.score FROM unnest(ids, scores) AS a(id, score)
        UNION ALL
        SELECT a.id, a.score FROM unnest(more_ids, more_scores) AS a(id, score)
        ORDER BY 2 DESC, 1
        LIMIT depth
    ) b
$fn$;
"""


UPGRADE = (
    text_stats.TABLES,
    text_stats.POLICIES,
    text_stats.NAMESPACE_GIN,
    _ANY_LEXEME,
    text_ranking.function(view=False),
    text_stats.TRIGGERS,
    _PIN,
    text_stats.BACKFILL,
)

DOWNGRADE = (
    "CREATE INDEX IF NOT EXISTS ix_memories_content_tsv ON memories USING gin (content_tsv);"
    " DROP INDEX IF EXISTS ix_memories_namespace_tsv",
    "DROP TRIGGER memagent_text_stats_insert ON memories;"
    " DROP TRIGGER memagent_text_stats_delete ON memories;"
    " DROP TRIGGER memagent_text_stats_update ON memories;"
    " DROP TRIGGER memagent_text_stats_truncate ON memories",
    "DROP FUNCTION memagent_text_stats_insert(), memagent_text_stats_delete(), memagent_text_stats_update(),"
    f" memagent_text_stats_truncate(), {text_ranking.SIGNATURE},"
    " memagent_any_lexeme(text[]),"
    " memagent_best(bigint[], double precision[], bigint[], double precision[], integer)",
    "DROP TABLE memory_text_stats, memory_term_stats",
)

# Revision 0013: the ranking with the view's arguments replaces revision 0011's (and back on downgrade).
VIEW_UPGRADE = (
    text_ranking.function(view=True),
    _pin((text_ranking.VIEW_SIGNATURE,)),
    f"DROP FUNCTION {text_ranking.SIGNATURE}",
)
VIEW_DOWNGRADE = (
    text_ranking.function(view=False),
    _pin((text_ranking.SIGNATURE,)),
    f"DROP FUNCTION {text_ranking.VIEW_SIGNATURE}",
)

# Revision 0016's ranking and its later versions (the same signature) run pinned, callable by memagent_app.
_PIN_FLOOR = _pin((text_floor.SIGNATURE,))

# Revision 0016: the ranking with a floor relative to the best score (memagent.store.text_floor), a ninth
# argument, replaces 0013's, and back on downgrade.
FLOOR_UPGRADE = (
    text_floor.function(),
    _PIN_FLOOR,
    f"DROP FUNCTION {text_ranking.VIEW_SIGNATURE}",
)
FLOOR_DOWNGRADE = (
    text_ranking.function(view=True),
    _pin((text_ranking.VIEW_SIGNATURE,)),
    f"DROP FUNCTION {text_floor.SIGNATURE}",
)

# Revision 0016 too: the full-text index without its pending list. With GIN's fastupdate (PostgreSQL's
# default) a stored memory's entries wait in an unordered list of up to gin_pending_list_limit (4 MB) that
# every full-text search reads whole, and that the write which overflows it merges into the index: a text
# query for one memory in a 20,000-memory namespace read 361 pages and took 5.2 ms with the list full,
# 7 pages and 0.06 ms after it was merged (docs/benchmarks.md). Off, each write adds its entries at once.
_GIN_INDEXES = "ARRAY['ix_memories_namespace_tsv', 'ix_memories_content_tsv']"  # with btree_gin, or without


def _gin(option: str) -> str:
    return f"""
DO $$
DECLARE
    ix text;
BEGIN
    FOREACH ix IN ARRAY {_GIN_INDEXES} LOOP
        IF to_regclass(ix) IS NOT NULL THEN
            EXECUTE format('ALTER INDEX %I {option}', ix);
            PERFORM gin_clean_pending_list(to_regclass(ix));
        END IF;
    END LOOP;
END
$$"""


GIN_DIRECT = _gin("SET (fastupdate = off)")
GIN_PENDING = _gin("RESET (fastupdate)")

# Revision 0017: the full-text index keyed by namespace and word (memagent.store.text_terms) replaces
# 0011's, and the ranking searches it (the revision then grants memagent_app the index's function:
# memagent.store.roles); back on downgrade (0011's index rebuilt as 0016 left it).
TERMS_UPGRADE = (
    text_terms.FUNCTIONS,
    text_terms.INDEX,
    "DROP INDEX IF EXISTS ix_memories_namespace_tsv; DROP INDEX IF EXISTS ix_memories_content_tsv",
    text_terms.function(),
    _PIN_FLOOR,
)
TERMS_DOWNGRADE = (
    _replacing(text_floor.function()),
    _PIN_FLOOR,
    "CREATE INDEX ix_memories_content_tsv ON memories USING gin (content_tsv)",
    text_stats.NAMESPACE_GIN,
    GIN_DIRECT,
    "DROP INDEX ix_memories_ns_lexemes",
    f"DROP FUNCTION {text_terms.NS_LEXEMES}, {text_terms.NS_QUERY}",
)

# Revision 0018: a small namespace's ranking finds its matches through that index (memagent.store.text_small);
# the same signature, so CREATE OR REPLACE keeps owner and grants, and the path is pinned again.
SMALL_UPGRADE = (text_small.function(), _PIN_FLOOR)
SMALL_DOWNGRADE = (text_terms.function(), _PIN_FLOOR)

# Revision 0019: fewer statements in the ranking's passes, none that can find nothing new
# (memagent.store.text_passes); revision 0020 runs PASSES_UPGRADE again (0019's first version's fix).
PASSES_UPGRADE = (text_passes.function(), _PIN_FLOOR)
PASSES_DOWNGRADE = (text_small.function(), _PIN_FLOOR)

# Revision 0021: the index keys a word held more than once a second time, and pass 2 reads by both keys
# (memagent.store.text_tiers); the index is rebuilt with its function, and back on downgrade.
# (ANALYZE: the planner's statistics of the index's expression, whose entries changed.)
TIERS_UPGRADE = (
    text_tiers.NS_LEXEMES_TIERED,
    text_tiers.REINDEX,
    "ANALYZE memories",
    text_tiers.function(),
    _PIN_FLOOR,
)
TIERS_DOWNGRADE = (
    text_tiers.NS_LEXEMES_PLAIN,
    text_tiers.REINDEX,
    "ANALYZE memories",
    text_passes.function(),
    _PIN_FLOOR,
)

# Revision 0024: few memories of the kinds a ranking asks for are scored in one pass, read through the
# (namespace, kind) index (memagent.store.text_kinds); the same signature, so owner and grants are kept.
KINDS_UPGRADE = (text_kinds.function(), _PIN_FLOOR)
KINDS_DOWNGRADE = (text_tiers.function(), _PIN_FLOOR)

# Revision 0026: fewer memories read for common words, in pass 1 and in pass 2's fallback
# (memagent.store.text_pairs); the same signature.
PAIRS_UPGRADE = (text_pairs.function(), _PIN_FLOOR)
PAIRS_DOWNGRADE = (text_kinds.function(), _PIN_FLOOR)

# Revision 0027: short of depth, a common word's memories holding it more than once are read first
# (memagent.store.text_repeats); the same signature.
REPEATS_UPGRADE = (text_repeats.function(), _PIN_FLOOR)
REPEATS_DOWNGRADE = (text_pairs.function(), _PIN_FLOOR)

# Revision 0030: pass 2 searches the index by the first three words its sets share, however few sets
# (memagent.store.text_prefixes); the same signature.
PREFIXES_UPGRADE = (text_prefixes.function(), _PIN_FLOOR)
PREFIXES_DOWNGRADE = (text_repeats.function(), _PIN_FLOOR)

# Revision 0031: the query's words in the order of the bound of a memory holding each once
# (memagent.store.text_order); the same signature.
ORDER_UPGRADE = (text_order.function(), _PIN_FLOOR)
ORDER_DOWNGRADE = (text_prefixes.function(), _PIN_FLOOR)

# Revision 0032: a memory's score one expression of the query's words (memagent.store.text_inline), and pass 2
# without the sets whose memories pass 1 scored (memagent.store.text_covered); the same signature.
COVERED_UPGRADE = (text_covered.function(), _PIN_FLOOR)
COVERED_DOWNGRADE = (text_order.function(), _PIN_FLOOR)

# Revision 0033: a word a memory says more than once counted by ts_rank_cd, not a subquery
# (memagent.store.text_counts); the same signature.
COUNTS_UPGRADE = (text_counts.function(), _PIN_FLOOR)
COUNTS_DOWNGRADE = (text_covered.function(), _PIN_FLOOR)
