"""Pass 2 with a short memory's words keyed apart (measured, not built).

    python benchmarks/text_short_keys.py --data ../shared/benchdata/locomo/locomo_dev.json \
        --home /work/bench-home-1m --namespace big --short 24

A memory's BM25 weight for a word falls as the memory gets longer, and pass 2 of the text ranking bounds
each word at its shortest memory, so a set of common words whose bound reaches the threshold only in a short
memory is searched whole. This measures keying every word of a memory of at most --short distinct words a
third time (`<namespace key><word`) and letting pass 2 bound each set twice: at any length, as shipped, and
for a memory longer than --short (each word's weight at max(its shortest memory, --short + 1)). A set
reaching theta only as the former is searched by its short keys and extended with further words for its
long memories; one reaching it as the latter is searched whole and not extended; with too many sets, the
shipped sets (then its own fallbacks).

Over a home built by benchmarks/hybrid_scale.py (its embedded server is started if needed): a partial GIN
index over the namespace's memories on the keys with the third one (`memagent_bench_short_lexemes`), and the
shipped ranking (revision 0033's function) and the variant as temporary functions of the benchmark's own
session, the variant's pass 2 searching the new index; both called on --queries LoCoMo questions after the
first 600 (the questions hybrid_scale.py warms up with), in turn, which first alternating (depth 50,
hybrid's floor). With --prefix N, the variant is instead the shipped ranking with pass 2's sets grouped by
their first N words rather than three (each group one search of the index; fewer searches, more memories
read). Printed: p50 / p95 / p99 / mean, how many answers differed (none should: the ranking
stays exact), the slowest questions. The index and its function are dropped at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memagent.store import text_counts, text_floor
from memagent.store.text_terms import _KEY

_BOUND = "w.idf * {tf} * 2.2 / ({tf} + 1.2 * (1 - 0.75 + 0.75 * greatest(s.min_dl, {short} + 1) / avgdl))"

_EDITS = (
    (
        "    ub1 double precision[];\n",
        "    ub1 double precision[];\n    ubs double precision[];\n"
        "    ubs1 double precision[];\n    suffix_s double precision[];\n    keys1s tsquery[];\n",
    ),
    (
        "           array_agg(t.ub1 ORDER BY t.ub1 DESC, t.lexeme)\n    INTO lex, idf, ub, df, ub1\n",
        "           array_agg(t.ub1 ORDER BY t.ub1 DESC, t.lexeme),\n"
        "           array_agg(t.ubs ORDER BY t.ub1 DESC, t.lexeme),\n"
        "           array_agg(t.ubs1 ORDER BY t.ub1 DESC, t.lexeme)\n"
        "    INTO lex, idf, ub, df, ub1, ubs, ubs1\n",
    ),
    (
        " AS ub1\n",
        " AS ub1,\n               "
        + _BOUND.format(tf="s.max_tf::float8", short="{short}")
        + " AS ubs,\n               "
        + _BOUND.format(tf="1::float8", short="{short}")
        + " AS ubs1\n",
    ),
    (
        "           array_agg(memagent_any_lexeme(ARRAY[ns_key || '+' || u.x]) ORDER BY u.o)\n"
        "    INTO keys1, keys2 FROM",
        "           array_agg(memagent_any_lexeme(ARRAY[ns_key || '+' || u.x]) ORDER BY u.o),\n"
        "           array_agg(memagent_any_lexeme(ARRAY[ns_key || '<' || u.x]) ORDER BY u.o)\n"
        "    INTO keys1, keys2, keys1s FROM",
    ),
)


# Pass 2's sets: shipped, from `WITH RECURSIVE c` to the column saying whether pass 1 read a set whole.
_CTE_FIRST = "        WITH RECURSIVE c(last, total, gap, conj, words, prefix, mask) AS (\n"
_CTE_LAST = "                   covered[c.mask + 1] AS cov\n"

_CTE = """        WITH RECURSIVE c(last, total, gap, conj, words, prefix, mask,
                         total_s, gap_s, conj_s, prefix_s, parent) AS (
            SELECT g.t, b.v, b.gap, b.x, 1, b.x, CASE WHEN g.t <= 3 THEN 1 << (g.t - 1) ELSE 0 END,
                   b.vs, b.gaps, b.xs, b.xs, 0::float8
            FROM generate_series(n_first + 1, m) AS g(t)
            CROSS JOIN LATERAL (
                SELECT CASE WHEN tiered THEN ub1[g.t] ELSE ub[g.t] END, NULL::float8, keys1[g.t],
                       CASE WHEN tiered THEN ubs1[g.t] ELSE ubs[g.t] END, NULL::float8, keys1s[g.t]
                UNION ALL
                SELECT ub[g.t], ub[g.t] - ub1[g.t], keys2[g.t], ubs[g.t], ubs[g.t] - ubs1[g.t], keys2[g.t]
                WHERE tiered AND ub[g.t] > ub1[g.t] AND (ub1[g.t] < theta OR ubs1[g.t] < theta)
                    AND g.t <> repeats_word
            ) b(v, gap, x, vs, gaps, xs)
            WHERE suffix[g.t] >= theta
            UNION ALL
            SELECT h.t, c.total + b.v, least(c.gap, b.gap), c.conj && b.x, c.words + 1,
                   CASE WHEN c.words < 3 THEN c.prefix && b.x ELSE c.prefix END,
                   c.mask | CASE WHEN h.t <= 3 THEN 1 << (h.t - 1) ELSE 0 END,
                   c.total_s + b.vs, least(c.gap_s, b.gaps), c.conj_s && b.xs,
                   CASE WHEN c.words < 3 THEN c.prefix_s && b.xs ELSE c.prefix_s END, c.total
            FROM c CROSS JOIN LATERAL generate_series(c.last + 1, m) AS h(t)
            CROSS JOIN LATERAL (
                SELECT CASE WHEN tiered THEN ub1[h.t] ELSE ub[h.t] END, NULL::float8, keys1[h.t],
                       CASE WHEN tiered THEN ubs1[h.t] ELSE ubs[h.t] END, NULL::float8, keys1s[h.t]
                UNION ALL
                SELECT ub[h.t], ub[h.t] - ub1[h.t], keys2[h.t], ubs[h.t], ubs[h.t] - ubs1[h.t], keys2[h.t]
                WHERE tiered AND ub[h.t] > ub1[h.t]
                    AND (c.total + ub1[h.t] < theta OR c.total_s + ubs1[h.t] < theta)
                    AND h.t <> repeats_word
            ) b(v, gap, x, vs, gaps, xs)
            -- A set reaching theta only in short memories is extended for long ones.
            WHERE c.total_s < theta AND CASE WHEN c.total < theta THEN c.total + suffix[h.t] >= theta
                                             ELSE c.total_s + suffix_s[h.t] >= theta END
        )
        -- (revision 0032) The sets holding a pair pass 1 read are counted, as before, for the
        -- path pass 2 takes, and left out of what it searches.
        SELECT count(*), array_agg(x.conj) FILTER (WHERE x.kept AND NOT x.cov),
               sum(octet_length(x.conj::text)) FILTER (WHERE x.kept),
               array_agg(x.prefix) FILTER (WHERE x.kept AND NOT x.cov),
               count(*) FILTER (WHERE x.kept), count(DISTINCT x.prefix) FILTER (WHERE x.kept)
        INTO explored, q_sets, q_bytes, q_prefixes, sets, groups
        FROM (
            -- A set reaching theta in a long memory is searched whole; one reaching it
            -- only in short memories (first in its line of sets to reach it), by its short keys.
            SELECT CASE WHEN c.total_s >= theta THEN c.conj ELSE c.conj_s END AS conj,
                   CASE WHEN c.total_s >= theta THEN c.prefix ELSE c.prefix_s END AS prefix,
                   CASE WHEN c.total_s >= theta
                        THEN NOT coalesce(c.total_s - c.gap_s >= theta * (1 + 1e-9), false)
                        ELSE c.total >= theta AND c.parent < theta
                             AND NOT coalesce(c.total - c.gap >= theta * (1 + 1e-9), false) END AS kept,
                   covered[c.mask + 1] AS cov
"""

_PASS_2 = (
    (
        "    -- sums below theta.\n    suffix := array_fill(0::float8, ARRAY[m + 1]);\n"
        "    FOR i IN REVERSE m..1 LOOP\n        suffix[i] := suffix[i + 1] + ub[i];\n    END LOOP;\n",
        "    -- sums below theta.\n    suffix := array_fill(0::float8, ARRAY[m + 1]);\n"
        "    suffix_s := array_fill(0::float8, ARRAY[m + 1]);\n"
        "    FOR i IN REVERSE m..1 LOOP\n        suffix[i] := suffix[i + 1] + ub[i];\n"
        "        suffix_s[i] := suffix_s[i + 1] + ubs[i];\n    END LOOP;\n",
    ),
    ("    tiered boolean := true;\n", "    tiered boolean := true;\n    lengths boolean := true;\n"),
    (
        "        EXIT WHEN NOT tiered OR NOT (explored >= 1000 OR sets > 64"
        " OR coalesce(q_bytes, 0) > 500000);\n"
        "        tiered := false;  -- too many sets: each word held, bound ub\n",
        "        EXIT WHEN NOT (explored >= 1000 OR sets > 64 OR coalesce(q_bytes, 0) > 500000);\n"
        "        IF lengths THEN  -- too many sets: the shipped ones, a memory of any length bounded alike\n"
        "            lengths := false;\n            ubs := ub;\n            ubs1 := ub1;\n"
        "            suffix_s := suffix;\n            keys1s := keys1;\n"
        "        ELSIF tiered THEN\n"
        "            tiered := false;  -- too many sets: each word held, bound ub\n"
        "        ELSE\n            EXIT;\n        END IF;\n",
    ),
)


def _shipped_cte(sql: str) -> str:
    start = sql.index(_CTE_FIRST)
    return sql[start : sql.index(_CTE_LAST, start) + len(_CTE_LAST)]


KEYS = f"""
CREATE FUNCTION memagent_bench_short_lexemes(p_namespace text, p_tsv tsvector, p_short integer)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT array_to_tsvector(ARRAY(
        SELECT k.key || s.tag || t.lexeme
        FROM (SELECT {_KEY} AS key) k
        CROSS JOIN unnest(p_tsv) t
        CROSS JOIN LATERAL (VALUES ('/'), ('+'), ('<')) s(tag)
        WHERE octet_length(t.lexeme) <= 2000
            AND (s.tag <> '+' OR coalesce(array_length(t.positions, 1), 1) > 1)
            AND (s.tag <> '<' OR length(p_tsv) <= p_short)
    ))
$fn$"""

SHIPPED_PASS_2 = "EXECUTE replace(scoring, 'memagent_ns_query($1, $5)', 'ANY ($5)')"


def variant(short: int, namespace_literal: str) -> str:
    """The shipped ranking with pass 2 bounding short and long memories apart, as pg_temp.ranking_short."""
    edits = tuple((before, after.replace("{short}", str(short))) for before, after in _EDITS + _PASS_2)
    shipped = text_counts.function()
    sql = text_floor.edited(shipped, ((_shipped_cte(shipped), _CTE), *edits), "short keys")
    doubled = namespace_literal.replace("'", "''")  # (inside the function's string literal)
    searched = (
        "EXECUTE replace(replace(scoring, 'memagent_ns_query($1, $5)', 'ANY ($5)'),"
        " 'memagent_ns_lexemes(m.namespace, m.content_tsv) @@ ANY ($5)',"
        f" 'm.namespace = {doubled} AND public.memagent_bench_short_lexemes(m.namespace,"
        f" m.content_tsv, {short}) @@ ANY ($5)')"
    )
    assert sql.count(SHIPPED_PASS_2) == 2  # (the repeats step and pass 2: both through the new index)
    sql = sql.replace(SHIPPED_PASS_2, searched)
    return sql.replace("FUNCTION memagent_text_ranking(", "FUNCTION pg_temp.ranking_short(", 1)


def variant_prefix(words: int) -> str:
    """The shipped ranking with pass 2's sets grouped by their first `words` words instead of three."""
    shipped = text_counts.function()
    before = "CASE WHEN c.words < 3 THEN c.prefix && b.x ELSE c.prefix END"
    assert shipped.count(before) == 1
    sql = shipped.replace(before, before.replace("< 3", f"< {words}"))
    return sql.replace("FUNCTION memagent_text_ranking(", "FUNCTION pg_temp.ranking_short(", 1)


def short_keys(cur: Any, namespace: str, literal: str, short: int) -> None:
    """The partial index over the namespace on the keys with the short ones (its size and build time said)."""
    start = time.perf_counter()
    cur.execute(
        "CREATE INDEX memagent_bench_short_keys ON memories USING gin"
        f" (memagent_bench_short_lexemes(namespace, content_tsv, {short}))"
        f" WITH (fastupdate = off) WHERE namespace = {literal}"
    )
    built = time.perf_counter() - start
    cur.execute(
        "SELECT pg_relation_size('memagent_bench_short_keys'),"
        " (SELECT count(*) FILTER (WHERE length(content_tsv) <= %s) FROM memories"
        "  WHERE namespace = %s), (SELECT count(*) FROM memories WHERE namespace = %s)",
        (short, namespace, namespace),
    )
    size, short_rows, rows = cur.fetchone()
    print(
        f"index with short keys over {rows} memories"
        f" ({short_rows} of at most {short} words):"
        f" built in {built:.1f} s, {size / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--namespace", default="big")
    parser.add_argument("--short", type=int, default=24, help="longest memory keyed apart, in words")
    parser.add_argument(
        "--prefix", type=int, help="instead: pass 2's sets grouped by their first PREFIX words (no new index)"
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--slowest", type=int, default=10)
    args = parser.parse_args()
    from text_revisions import alternate, ranking_only, report, temporary

    ranking_only(args.home)
    from hybrid_scale import locomo_turns

    from memagent.config import get_settings
    from memagent.store.database import Database
    from memagent.store.text_floor import FLOOR

    questions = locomo_turns(args.data)[1][600 : 600 + args.queries]
    times: dict[str, list[float]] = {"shipped": [], "variant": []}
    names = {"shipped": "ranking_shipped", "variant": "ranking_short"}
    with Database(get_settings()) as db:
        raw = db.engine.raw_connection()
        try:
            conn: Any = raw.driver_connection
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("SELECT quote_literal(%s)", (args.namespace,))
            literal = cur.fetchone()[0]
            try:
                if not args.prefix:
                    cur.execute(KEYS)
                    short_keys(cur, args.namespace, literal, args.short)
                cur.execute(temporary("text_counts", names["shipped"]))
                cur.execute(variant_prefix(args.prefix) if args.prefix else variant(args.short, literal))
                differ = alternate(cur, names, args.namespace, questions, times)
            finally:
                cur.execute("DROP INDEX IF EXISTS memagent_bench_short_keys")
                cur.execute("DROP FUNCTION IF EXISTS memagent_bench_short_lexemes(text, tsvector, integer)")
        finally:
            raw.close()
    way = f"sets by their first {args.prefix} words" if args.prefix else f"short {args.short}"
    print(f"{len(questions)} questions, {args.namespace!r}, depth 50, floor {FLOOR}, {way}")
    report(times, questions, differ, args.slowest)


if __name__ == "__main__":
    main()
