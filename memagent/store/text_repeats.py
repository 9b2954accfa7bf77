"""Revision 0027: short of `depth`, a common word's memories holding it more than once are read first.

Pass 1 of the ranking sets theta, a lower bound of the depth-th best score. When the memories holding the
rarest query words are fewer than `depth`, it widens to every holder of the next word, and that word can be
common: "What Console does Nate own?" is, to the index, "nate" ("own" is a stop word, no memory of the
namespace says "console"), and pass 1 scored all 29,962 memories of the 100,000-memory namespace holding it
(120-190 ms) for a top 50 that only memories saying "nate" twice reach.

Before widening to a word held by at least WIDE times `depth` memories, some more than once by its
statistics (its largest count in a memory over 1; after deletes that can be stale, and then nothing is
found and the step is put back), pass 1 now scores the memories holding it more than once (the index's
second key, revision 0021). With those, `depth` or more are scored: theta is set, and pass 2 bounds every
memory it has not read as holding that word once (their only way to hold it: those holding it more often
are all scored), so its sets leave out the word's second key. Fewer than `depth`, and they are put back
(so that nothing is scored twice in pass 1) and the step reads every holder as before; what the step read
is then read for nothing: fewer than `depth` memories in scope, and in a scoped recall (a session, kinds,
archived ones, a past time) also the namespace's others holding the word more than once, which the index
does not tell apart. A memory scored here can be read again by pass 2 (a set holding the word once matches
it too); the final top counts each memory once (UNION: the same memory scores the same, by the same
expression over the same parameters). The threshold is wide because the step trades a higher theta for
fewer reads: for a word held by a few hundred memories its repeats can set a theta lower than its holders
would, and pass 2 then reads more than the step saved (an outside review's case, at 4 x depth). The result
is the exact BM25 top (tests/test_text_repeats.py): "What Console does Nate own?" reads the 2,648 memories
saying "nate" more than once instead of its 29,962 holders, 136-188 → 15-16 ms (docs/benchmarks.md).
"""

from __future__ import annotations

from memagent.store import text_floor, text_pairs

# Widening to a word held by at least this many times `depth` memories, pass 1 reads its repeats first.
WIDE = 20

_ANCHOR = "    -- Every memory holding one of the first n_first terms is scored; the others score at most\n"

_STEP = f"""    -- Short of depth, the next word common (revision 0027): first its memories holding it more
    -- than once (the index's second key). With depth or more scored, theta is set, and pass 2 bounds
    -- every memory it has not read as holding that word once; fewer, and they are put back.
    IF coalesce(array_length(ids, 1), 0) < p_depth AND n_first < m
        AND suffix[n_first + 1] >= p_floor * coalesce(scores[1], 0)
        AND ub[n_first + 1] > ub1[n_first + 1] AND df[n_first + 1] >= {WIDE}::bigint * p_depth
    THEN
        ns_key := left(encode(sha256(convert_to(p_namespace, 'UTF8')), 'hex'), 8);
        EXECUTE replace(scoring, 'memagent_ns_query($1, $5)', 'ANY ($5)') INTO more_ids, more_scores
            USING p_namespace, lex, idf, avgdl,
                  ARRAY[memagent_any_lexeme(ARRAY[ns_key || '+' || lex[n_first + 1]])],
                  p_session, p_before, p_depth, done, p_kinds, p_as_of;
        IF coalesce(array_length(ids, 1), 0) + coalesce(array_length(more_ids, 1), 0) >= p_depth THEN
            SELECT b.ids, b.scores INTO ids, scores
            FROM memagent_best(ids, scores, more_ids, more_scores, p_depth) b;
            repeats_word := n_first + 1;
        END IF;
    END IF;
"""

_EDITS = (
    ("    q_sets tsquery[];\n", "    q_sets tsquery[];\n    repeats_word integer := 0;\n"),
    (_ANCHOR, _STEP + _ANCHOR),
    (  # pass 2: the word whose repeats are all scored is held once in every memory it reads
        "                WHERE tiered AND ub[g.t] > ub1[g.t] AND ub1[g.t] < theta\n",
        "                WHERE tiered AND ub[g.t] > ub1[g.t] AND ub1[g.t] < theta AND g.t <> repeats_word\n",
    ),
    (
        "                WHERE tiered AND ub[h.t] > ub1[h.t] AND c.total + ub1[h.t] < theta\n",
        "                WHERE tiered AND ub[h.t] > ub1[h.t] AND c.total + ub1[h.t] < theta"
        " AND h.t <> repeats_word\n",
    ),
    (  # a memory pass 2 read again counts once
        "        UNION ALL SELECT * FROM unnest(more_ids, more_scores)\n    ) b WHERE b.s >= p_floor * best",
        "        UNION SELECT * FROM unnest(more_ids, more_scores)\n    ) b WHERE b.s >= p_floor * best",
    ),
)


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0026's, a common word's repeats read first."""
    return text_floor.edited(text_pairs.function(), _EDITS, "0027")
