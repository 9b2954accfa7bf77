"""Revision 0031: the query's words in the order of the bound of a memory holding each once.

The ranking takes the query's words in one order for everything it does: pass 1 scores the holders of the
first ones (the rarest, it means), pass 2 enumerates its sets in that order and searches each set's first
three words (revision 0030). Since revision 0021 the order was the bound of a word at its largest count
in a memory (max_tf) and its shortest memory; but one memory saying a common word twice lifts that bound
over a rarer word's ("Which US states might Tim be in …", 100,000 memories: "might", in 1,073 memories,
twice in one, went before "state", in 139), and then pass 1 reads the common word's holders first, pass
2's prefixes start with it, and its postings are long. The bound of a memory holding the word once (ub1:
its IDF at its shortest memory) orders the words by how rare they are, their lengths counted. Every bound
is unchanged, and the ranking is exact in any order, so the result is the same (the exact BM25 top). On
900 LoCoMo questions in the 1M table's 100k namespace, the two orders in turn, the same results: p95 31.8
→ 28.8 ms, 28.5 → 25.8 (docs/benchmarks.md).
"""

from __future__ import annotations

from memagent.store import text_floor, text_prefixes

_BEFORE = """    -- The query's lexemes the namespace holds, highest bound (rarest) first.
    SELECT array_agg(t.lexeme ORDER BY t.ub DESC, t.lexeme), array_agg(t.idf ORDER BY t.ub DESC, t.lexeme),
           array_agg(t.ub ORDER BY t.ub DESC, t.lexeme), array_agg(t.df ORDER BY t.ub DESC, t.lexeme),
           array_agg(t.ub1 ORDER BY t.ub DESC, t.lexeme)
"""
_AFTER = """    -- The query's lexemes the namespace holds, the highest bound of a memory holding one once
    -- first: the rarest, their shortest memories counted (revision 0031; a word said many times in
    -- one memory no longer goes first for it).
    SELECT array_agg(t.lexeme ORDER BY t.ub1 DESC, t.lexeme), array_agg(t.idf ORDER BY t.ub1 DESC, t.lexeme),
           array_agg(t.ub ORDER BY t.ub1 DESC, t.lexeme), array_agg(t.df ORDER BY t.ub1 DESC, t.lexeme),
           array_agg(t.ub1 ORDER BY t.ub1 DESC, t.lexeme)
"""


def function() -> str:
    """CREATE OR REPLACE FUNCTION memagent_text_ranking: 0030's, words ordered by their once-held bound."""
    return text_floor.edited(text_prefixes.function(), ((_BEFORE, _AFTER),), "0031")
