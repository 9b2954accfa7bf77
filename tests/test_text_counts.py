"""Revision 0033 (memagent.store.text_counts): a word a memory says more than once is counted by ts_rank_cd;
the scores must stay the old statement's bits, the rows revision 0032's.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.store import text_counts, text_covered
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.text_ranking import SMALL
from tests.test_text_covered import long_memory
from tests.test_text_ranking import memories_of, ranking, replaced_ranking
from tests.test_text_tiers import COMMON, MEDIUM, check, queries, repeated_corpus, split_store
from tests.test_text_tiers_migration import ranking_both_ways

# Every word of every memory of the namespace that keeps more than one position for it: the count ts_rank_cd
# gives against the positions, in the tsvector as stored and as the ranking filters it (every position
# weighted A), and how many such words there were.
_COUNTS = """
SELECT count(*) FILTER (WHERE cd <> n OR cd_filtered <> n), count(*), max(n)
FROM (
    SELECT array_length(t.positions, 1) AS n,
           ts_rank_cd('{1,1,1,1}', m.content_tsv, memagent_any_lexeme(ARRAY[t.lexeme])) AS cd,
           ts_rank_cd('{1,1,1,1}', ts_filter(setweight(m.content_tsv, 'A', ARRAY[t.lexeme]), '{a}'),
                      memagent_any_lexeme(ARRAY[t.lexeme])) AS cd_filtered
    FROM memories m, unnest(m.content_tsv) t
    WHERE m.namespace = :ns AND array_length(t.positions, 1) > 1
) c
"""


def test_a_word_said_again_scores_the_same_bits(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Words said 2 to 300 times (to_tsvector keeps 255 positions of a word), in memories whose tsvector is
    read as stored, compressed, or too long to be (filtered first): ts_rank_cd counts each word's positions
    exactly, and the ranking's scores are the old statement's bits over every memory
    (tests/test_text_tiers.py's BITWISE), its rows revision 0032's."""
    rng = random.Random(33)
    texts = repeated_corpus(rng, SMALL + 300)
    texts += [" ".join(["c0x"] * count + ["m1x"] * (count % 7 + 1)) for count in (2, 3, 9, 40, 255, 256, 300)]
    texts += [long_memory(rng, 700) for _ in range(10)] + [long_memory(rng, 250) for _ in range(10)]
    split_store(sessions, rng, texts, "counts")
    wrong, counted, most = connection.execute(text(_COUNTS), {"ns": "counts"}).one()
    assert wrong == 0 and counted > 1000 and most >= 255, (wrong, counted, most)  # to_tsvector keeps 255
    docs = memories_of(connection, "counts")
    words = COMMON + MEDIUM
    qs = [*queries(rng, 10), "c0x m1x", "c0x", " ".join(rng.sample(words, 32))]
    assert check(connection, "counts", docs, qs, exact=True) > 0
    for query in qs:
        for depth in (10, 60):
            found = ranking(connection, "counts", query, depth, floor=0.0)
            with replaced_ranking(connection, text_covered.function()):  # revision 0032's
                assert ranking(connection, "counts", query, depth, floor=0.0) == found


def test_the_revision_both_ways(embedded: EmbeddedPostgres) -> None:
    """0032 → 0033 → 0032: the function's body is each revision's, its owner, grants, pinned path and
    security the same throughout."""
    ranking_both_ways(
        embedded,
        "memagent_counts_migration",
        ("0032", text_covered.function()),
        ("0033", text_counts.function()),
    )
