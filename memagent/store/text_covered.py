"""Revision 0032, part 2: pass 2 leaves out the sets of words whose memories pass 1 has all scored.

Pass 1 reads every memory holding the three rarest words, then every one holding two of them (each pair
it reads: the first and second, the first and third, and the second and third when expected to hold few),
scores them, keeps the best, and leaves them all out of pass 2 (`done`). But pass 2 still searched the
index for sets holding those pairs: "What is something Nate gave to Joanna that brings her a lot of joy?"
(the 1M table's 100k namespace) searched for "gave & joy", "joy & bring & lot" and 18 more, and half the
3,462 memories those searches found had been read already (pass 1 read "joy & bring": 3,597 memories).
A set holding a pair pass 1 read holds only memories it read, so it is no longer searched: the
enumeration carries which of the three rarest words a set holds (a bit each), and a kept set whose bits
cover a read pair's (or the three's) is left out of what pass 2 searches. It still counts for the path
pass 2 takes (its sets, or, with too many, any of the rarest words), as before: counted out, an outside
review found pass 2 searching 48 sets where it had searched the rarest words, and the planner reading a
whole session for them (84 ms against 12). So pass 2 searches what it did, less sets whose memories it
left out anyway, and the result is unchanged (the exact BM25 top: tests/test_text_covered.py).

Also: each word's two index keys (held at all, held more than once) are built once before the
enumeration, not per set extended (a SQL function call each: 11 ms of that question's enumeration).

On 900 LoCoMo questions in that namespace, in turn with 0031's function, the same results: docs/benchmarks.md
("A memory's score one expression").
"""

from __future__ import annotations

from memagent.store import text_floor, text_inline

_ONE = "CASE WHEN {t} <= 3 THEN 1 << ({t} - 1) ELSE 0 END"  # the bit of a word among the three rarest

_TRIPLE = (  # pass 1's first step: the memories holding the three rarest words
    "        q := t1 && t2 && t3;\n"
    "        EXECUTE scoring INTO ids, scores\n"
    "            USING p_namespace, lex, idf, avgdl, q, p_session, p_before, p_depth, done, p_kinds,"
    " p_as_of;\n"
    "        done := q;\n"
)

_EDITS = (
    (
        "    score_sql text;\n",
        "    score_sql text;\n"
        "    keys1 tsquery[];\n"
        "    keys2 tsquery[];\n"
        "    read_masks integer[] := '{}';\n"
        "    covered boolean[];\n"
        "    groups bigint;\n",
    ),
    (
        _TRIPLE,
        _TRIPLE + "        read_masks := read_masks || 7;  -- (revision 0032) the three rarest words' bits\n",
    ),
    (
        "        q := (t1 && t2);\n        IF m >= 3 THEN\n            q := q || (t1 && t3);\n",
        "        q := (t1 && t2);\n"
        "        read_masks := read_masks || 3;\n"
        "        IF m >= 3 THEN\n"
        "            q := q || (t1 && t3);\n"
        "            read_masks := read_masks || 5;\n",
    ),
    (
        "                q := q || (t2 && t3);\n",
        "                q := q || (t2 && t3);\n                read_masks := read_masks || 6;\n",
    ),
    (
        "    ns_key := left(encode(sha256(convert_to(p_namespace, 'UTF8')), 'hex'), 8);\n    LOOP\n",
        "    ns_key := left(encode(sha256(convert_to(p_namespace, 'UTF8')), 'hex'), 8);\n"
        "    -- (revision 0032) Each word's keys, once; and which sets of the three rarest words (by their\n"
        "    -- bits) hold a set pass 1 read whole: a set holding one holds only memories scored already.\n"
        "    SELECT array_agg(memagent_any_lexeme(ARRAY[ns_key || '/' || u.x]) ORDER BY u.o),\n"
        "           array_agg(memagent_any_lexeme(ARRAY[ns_key || '+' || u.x]) ORDER BY u.o)\n"
        "    INTO keys1, keys2 FROM unnest(lex) WITH ORDINALITY AS u(x, o);\n"
        "    SELECT array_agg(EXISTS (SELECT 1 FROM unnest(read_masks) r WHERE (g.x & r) = r) ORDER BY g.x)\n"
        "    INTO covered FROM generate_series(0, 7) AS g(x);\n"
        "    LOOP\n",
    ),
    (
        "        WITH RECURSIVE c(last, total, gap, conj, words, prefix) AS (\n"
        "            SELECT g.t, b.v, b.gap, b.x, 1, b.x FROM generate_series(n_first + 1, m) AS g(t)\n",
        "        WITH RECURSIVE c(last, total, gap, conj, words, prefix, mask) AS (\n"
        f"            SELECT g.t, b.v, b.gap, b.x, 1, b.x, {_ONE.format(t='g.t')}\n"
        "            FROM generate_series(n_first + 1, m) AS g(t)\n",
    ),
    ("memagent_any_lexeme(ARRAY[ns_key || '/' || lex[g.t]])", "keys1[g.t]"),
    ("memagent_any_lexeme(ARRAY[ns_key || '+' || lex[g.t]])", "keys2[g.t]"),
    ("memagent_any_lexeme(ARRAY[ns_key || '/' || lex[h.t]])", "keys1[h.t]"),
    ("memagent_any_lexeme(ARRAY[ns_key || '+' || lex[h.t]])", "keys2[h.t]"),
    (
        "                   CASE WHEN c.words < 3 THEN c.prefix && b.x ELSE c.prefix END\n",
        "                   CASE WHEN c.words < 3 THEN c.prefix && b.x ELSE c.prefix END,\n"
        f"                   c.mask | {_ONE.format(t='h.t')}\n",
    ),
    (
        "        SELECT count(*), array_agg(x.conj) FILTER (WHERE x.kept),\n"
        "               sum(octet_length(x.conj::text)) FILTER (WHERE x.kept),\n"
        "               array_agg(x.prefix) FILTER (WHERE x.kept)\n"
        "        INTO explored, q_sets, q_bytes, q_prefixes\n"
        "        FROM (\n"
        "            SELECT c.conj, c.prefix, c.total >= theta\n"
        "                       AND NOT coalesce(c.total - c.gap >= theta * (1 + 1e-9), false) AS kept\n"
        "            FROM c LIMIT 1000  -- the recursion stops there\n"
        "        ) x;\n"
        "        sets := coalesce(array_length(q_sets, 1), 0);\n",
        "        -- (revision 0032) The sets holding a pair pass 1 read are counted, as before, for the\n"
        "        -- path pass 2 takes, and left out of what it searches.\n"
        "        SELECT count(*), array_agg(x.conj) FILTER (WHERE x.kept AND NOT x.cov),\n"
        "               sum(octet_length(x.conj::text)) FILTER (WHERE x.kept),\n"
        "               array_agg(x.prefix) FILTER (WHERE x.kept AND NOT x.cov),\n"
        "               count(*) FILTER (WHERE x.kept), count(DISTINCT x.prefix) FILTER (WHERE x.kept)\n"
        "        INTO explored, q_sets, q_bytes, q_prefixes, sets, groups\n"
        "        FROM (\n"
        "            SELECT c.conj, c.prefix, c.total >= theta\n"
        "                       AND NOT coalesce(c.total - c.gap >= theta * (1 + 1e-9), false) AS kept,\n"
        "                   covered[c.mask + 1] AS cov\n"
        "            FROM c LIMIT 1000  -- the recursion stops there\n"
        "        ) x;\n",
    ),
    (
        "    IF coalesce(array_length(q_prefixes, 1), 0) BETWEEN 1 AND 64 THEN\n"
        "        q_sets := q_prefixes;\n",
        "    IF explored < 1000 AND coalesce(groups, 0) BETWEEN 1 AND 64 THEN\n"
        "        q_sets := q_prefixes;  -- (NULL when every set holds a pair pass 1 read: none to search)\n",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: part 1's, pass 2 without the sets pass 1 read."""
    return text_floor.edited(text_inline.function(), _EDITS, "0032")
