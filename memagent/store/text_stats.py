"""Full-text statistics kept at write time, for BM25 (revision 0011; ranked by memagent.store.text_ranking).

memory_text_stats holds, per namespace, how many memories it has and their total length;
memory_term_stats, per namespace and lexeme, its document frequency, the largest frequency it has in one
memory and the shortest memory it occurs in. Statement triggers on memories keep both in the writing
transaction (a row trigger for the rare update of content or namespace; TRUNCATE clears them), so a
committed memory is counted and findable at once. A memory's length is its number of distinct lexemes,
`length(content_tsv)`: free to read, and on the LoCoMo dev part as good as counting every word (R@5 59.6 /
R@10 68.0 against 59.1 / 68.1; docs/benchmarks.md). Deletions lower the frequencies; the largest frequency
and shortest memory stay as they were, which keeps them upper and lower bounds.

The trigger functions run as the tables' owner (memagent.store.text_ranking pins their search_path):
memagent_app holds no privilege on the statistics. Revision 0011 runs these statements; change them only in a
new revision.
"""

from __future__ import annotations

from memagent.store.roles import policy_sql

TABLES = """
CREATE TABLE memory_text_stats (
    namespace varchar(200) PRIMARY KEY,
    docs bigint NOT NULL,
    total_len bigint NOT NULL
);
CREATE TABLE memory_term_stats (
    namespace varchar(200) NOT NULL,
    lexeme text NOT NULL,
    df bigint NOT NULL,
    max_tf integer NOT NULL,
    min_dl integer NOT NULL,
    PRIMARY KEY (namespace, lexeme)
);
"""

# Adds (sign 1) or removes (sign -1) the memories of a transition table or row set `rows`.
_APPLY = """
INSERT INTO memory_text_stats AS s (namespace, docs, total_len)
SELECT r.namespace, {sign} * count(*), {sign} * coalesce(sum(length(r.content_tsv)), 0)
FROM {rows} r GROUP BY r.namespace ORDER BY r.namespace
ON CONFLICT (namespace) DO UPDATE
SET docs = s.docs + excluded.docs, total_len = s.total_len + excluded.total_len;
INSERT INTO memory_term_stats AS s (namespace, lexeme, df, max_tf, min_dl)
SELECT r.namespace, u.lexeme, {sign} * count(*),
       max(coalesce(array_length(u.positions, 1), 1)), min(length(r.content_tsv))
FROM {rows} r CROSS JOIN LATERAL unnest(r.content_tsv) u
GROUP BY r.namespace, u.lexeme ORDER BY r.namespace, u.lexeme
ON CONFLICT (namespace, lexeme) DO UPDATE SET
    df = s.df + excluded.df,
    max_tf = greatest(s.max_tf, excluded.max_tf),
    min_dl = least(s.min_dl, excluded.min_dl);
"""

_REMOVE_EMPTY = """
DELETE FROM memory_term_stats s USING (
    SELECT DISTINCT o.namespace, u.lexeme FROM {rows} o CROSS JOIN LATERAL unnest(o.content_tsv) u
) r
WHERE s.namespace = r.namespace AND s.lexeme = r.lexeme AND s.df <= 0;
DELETE FROM memory_text_stats s USING (SELECT DISTINCT o.namespace FROM {rows} o) r
WHERE s.namespace = r.namespace AND s.docs <= 0;
"""

# Revision 0013: the same removal by key. The join above was planned from statistics that had not seen the
# zeroed rows yet (df <= 0 estimated at one row): a nested loop over every removed word, quadratic — purging
# a namespace of 10,000 memories spent 2.4 s in it here, and one of 100,000 ran for many minutes. Per
# namespace, one primary-key lookup per word instead, whatever the estimates.
_REMOVE_EMPTY_BY_KEY = """
FOR gone_namespace, gone_lexemes IN
    SELECT o.namespace, array_agg(DISTINCT u.lexeme)
    FROM {rows} o CROSS JOIN LATERAL unnest(o.content_tsv) u GROUP BY o.namespace
LOOP
    DELETE FROM memory_term_stats s
    WHERE s.namespace = gone_namespace AND s.lexeme = ANY (gone_lexemes) AND s.df <= 0;
END LOOP;
DELETE FROM memory_text_stats s USING (SELECT DISTINCT o.namespace FROM {rows} o) r
WHERE s.namespace = r.namespace AND s.docs <= 0;
"""


def _removing(remove_empty: str, create: str) -> str:
    """The delete and update trigger functions, removing emptied statistics with `remove_empty`."""
    return f"""
{create} memagent_text_stats_delete() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    gone_namespace text;
    gone_lexemes text[];
BEGIN
{_APPLY.format(sign=-1, rows="old_rows")}
{remove_empty.format(rows="old_rows")}
    RETURN NULL;
END
$fn$;
{create} memagent_text_stats_update() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    gone_namespace text;
    gone_lexemes text[];
BEGIN
    IF OLD.namespace IS NOT DISTINCT FROM NEW.namespace AND OLD.content IS NOT DISTINCT FROM NEW.content
    THEN
        RETURN NULL;
    END IF;
{_APPLY.format(sign=-1, rows="(SELECT OLD.namespace, OLD.content_tsv)")}
{remove_empty.format(rows="(SELECT OLD.namespace, OLD.content_tsv)")}
{_APPLY.format(sign=1, rows="(SELECT NEW.namespace, NEW.content_tsv)")}
    RETURN NULL;
END
$fn$;
"""


# Revision 0013 replaces the two functions (their search_path is pinned again: memagent.store.text_ranking).
_REPIN = "".join(
    f"EXECUTE format('ALTER FUNCTION memagent_text_stats_{name}() SET search_path = %I, pg_temp',"
    " current_schema());\n"
    for name in ("delete", "update")
)
KEYED_REMOVAL = (
    _removing(_REMOVE_EMPTY_BY_KEY, "CREATE OR REPLACE FUNCTION") + f"DO $$\nBEGIN\n{_REPIN}END\n$$;"
)
UNKEYED_REMOVAL = _removing(_REMOVE_EMPTY, "CREATE OR REPLACE FUNCTION") + f"DO $$\nBEGIN\n{_REPIN}END\n$$;"

TRIGGERS = f"""
CREATE FUNCTION memagent_text_stats_insert() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $fn$
BEGIN
{_APPLY.format(sign=1, rows="new_rows")}
    RETURN NULL;
END
$fn$;
{_removing(_REMOVE_EMPTY, "CREATE FUNCTION")}
CREATE FUNCTION memagent_text_stats_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    TRUNCATE memory_text_stats, memory_term_stats;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER memagent_text_stats_insert AFTER INSERT ON memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memagent_text_stats_insert();
CREATE TRIGGER memagent_text_stats_delete AFTER DELETE ON memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION memagent_text_stats_delete();
CREATE TRIGGER memagent_text_stats_update AFTER UPDATE OF content, namespace ON memories
    FOR EACH ROW EXECUTE FUNCTION memagent_text_stats_update();
CREATE TRIGGER memagent_text_stats_truncate AFTER TRUNCATE ON memories
    FOR EACH STATEMENT EXECUTE FUNCTION memagent_text_stats_truncate();
"""

# What the statistics hold for the memories already stored.
BACKFILL = _APPLY.format(sign=1, rows="memories")

POLICIES = "".join(policy_sql(table) for table in ("memory_text_stats", "memory_term_stats"))

# One namespace's memories holding a word: with btree_gin (a trusted extension shipped with PostgreSQL), the
# GIN index keys namespace and lexemes together and intersects them itself; with only content_tsv indexed,
# a word's entries in every namespace would be read from the table and filtered (measured at 1,000,000
# memories in 901 namespaces: 79 ms against 47 ms for one query). Without the privilege to create the
# extension, the single-column index stays and says so.
NAMESPACE_GIN = """
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS btree_gin;
EXCEPTION WHEN OTHERS THEN  -- no privilege, or a server without the extension (allow-listed, not shipped)
    RAISE WARNING 'memagent: cannot create the extension btree_gin; full-text recall in a namespace reads '
        'through the single-column index (slower in a database of many namespaces)';
END
$$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gin') THEN
        CREATE INDEX ix_memories_namespace_tsv ON memories USING gin (namespace, content_tsv);
        DROP INDEX ix_memories_content_tsv;
    END IF;
END
$$;
"""
