"""Revision 0032 (memagent.store.text_inline, memagent.store.text_covered): a memory's score is one expression
of the query's words, and pass 2 leaves out the sets whose memories pass 1 scored; the ranking must stay the
exact BM25 top, bit for bit, the very rows revision 0031 returned.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.store import text_covered, text_inline, text_order
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.text_ranking import SMALL
from tests.test_text_ranking import (
    assert_same,
    memories_of,
    ranking,
    ranking_and_reads,
    reference,
    replaced_ranking,
    store,
)
from tests.test_text_tiers import COMMON, MEDIUM, Kept, check, queries, repeated_corpus, split_store
from tests.test_text_tiers_migration import ranking_both_ways


def test_scores_are_the_same_bits_said_once_many_times_or_in_a_long_query(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Words said once to 300 times (a tsvector keeps 256 positions), words the index must quote, queries of
    up to 30 words (one expression) and of 40 (the subquery): the ranking's scores are the old statement's
    bits over every memory (tests/test_text_tiers.py's BITWISE), and its rows those of revision 0031."""
    rng = random.Random(32)
    texts = repeated_corpus(rng, SMALL + 500)
    texts += [" ".join(["c0x"] * count + ["m1x"]) for count in (6, 40, 255, 256, 300)]
    texts += ["o'brien said it's back\\slash", "o'brien o'brien path\\to\\it c1x"]
    split_store(sessions, rng, texts, "inline")
    docs = memories_of(connection, "inline")
    assert len(docs) > SMALL
    vocabulary = COMMON + MEDIUM + [f"r{i}x" for i in range(40)]
    qs = [*queries(rng, 10), "c0x m1x", "o'brien back\\slash c1x", "path\\to\\it c0x"]
    qs += [" ".join(rng.sample(vocabulary, 40)), " ".join(rng.sample(vocabulary, 33))]
    assert check(connection, "inline", docs, qs, exact=True) > 0
    for query in qs:
        for depth in (10, 60):
            found = ranking(connection, "inline", query, depth, floor=0.0)
            with replaced_ranking(connection, text_order.function()):  # revision 0031's
                assert ranking(connection, "inline", query, depth, floor=0.0) == found


# Pass 1 reads "aq & bq" whole (400 memories), then pass 2 must not search any set holding both.
_PAIRED = """
INSERT INTO memories (namespace, session_id, content, embedding_model, content_hash)
SELECT 'paired', 's', c, 'fake', md5(c) FROM (
    SELECT 'aq bq g' || i || 'q' AS c FROM generate_series(1, 400) i
    UNION ALL SELECT 'aq bq cq h' || i || 'q' FROM generate_series(1, 5) i
    UNION ALL SELECT 'aq dq j' || i || 'q k' || i || 'q' FROM generate_series(1, 300) i
    UNION ALL SELECT 'bq eq l' || i || 'q' FROM generate_series(1, 300) i
    UNION ALL SELECT 'cq dq eq n' || i || 'q' FROM generate_series(1, 600) i
    UNION ALL SELECT 'dq p' || i || 'q' FROM generate_series(1, 2500) i
    UNION ALL SELECT 'eq s' || i || 'q t' || i || 'q' FROM generate_series(1, 2500) i
) t
"""

_PROBE_AT = "    more_ids := NULL;  -- (not an earlier step's, already merged into ids)\n"


def _searched(conn: Connection, function: str, query: str, depth: int) -> tuple[list[str], list[set[str]]]:
    """The query's words in the ranking's order and, for each tsquery pass 2 searched, the words it holds."""
    assert function.count(_PROBE_AT) == 1
    probe = "    RAISE NOTICE 'probe lex % searched %', array_to_string(lex, ' '), q_sets;\n"
    notices = Kept()
    conn.connection.dbapi_connection.notices = notices  # type: ignore[union-attr]
    with replaced_ranking(conn, function.replace(_PROBE_AT, probe + _PROBE_AT)):
        ranking(conn, "paired", query, depth, floor=0.0)
    found = next(m for m in (re.search(r"probe lex (.*) searched (.*)", n) for n in notices.items) if m)
    searched = found.group(2)  # <NULL> when no set reaches theta
    sets = [set(re.findall(r"[/+]([a-z0-9]+)", part)) for part in searched.split('","') if "/" in part]
    return found.group(1).split(), sets


def test_pass_2_searches_no_set_holding_a_pair_pass_1_read(connection: Connection) -> None:
    """ "aq & bq" in 405 memories, all three rarest words in 5: pass 1 reads the pairs of the rarest words;
    0031 then searched sets holding "aq" and "bq" again (each set here holds a pair pass 1 read), 0032
    none, reading fewer memories for the same rows; both the exact top."""
    connection.execute(text(_PAIRED))
    query = "aq bq cq dq eq"
    lex, sets = _searched(connection, text_covered.function(), query, 50)
    assert lex[:3] == ["aq", "bq", "cq"], lex
    assert not any({"aq", "bq"} <= words or {"aq", "cq"} <= words for words in sets), sets
    _, sets_then = _searched(connection, text_order.function(), query, 50)
    assert any({"aq", "bq"} <= words for words in sets_then), sets_then  # the case is reached
    everything = reference(connection, "paired", query)
    for depth in (10, 50, 200):
        for floor in (0.0, 0.2):
            found, read = ranking_and_reads(connection, "paired", query, depth, floor)
            with replaced_ranking(connection, text_order.function()):  # revision 0031's
                found_then, read_then = ranking_and_reads(connection, "paired", query, depth, floor)
            assert found == found_then
            assert_same(found, everything, depth, floor)
            assert read <= read_then, (depth, floor, read, read_then)
    found, read = ranking_and_reads(connection, "paired", query, 50, 0.0)
    with replaced_ranking(connection, text_order.function()):
        _, read_then = ranking_and_reads(connection, "paired", query, 50, 0.0)
    assert read < read_then - 300, (read, read_then)  # the pair's 405 memories not read twice


def test_the_revision_both_ways(embedded: EmbeddedPostgres) -> None:
    """0031 → 0032 → 0031: the function's body is each revision's, its owner, grants, pinned path and
    security the same throughout."""
    ranking_both_ways(
        embedded,
        "memagent_covered_migration",
        ("0031", text_order.function()),
        ("0032", text_covered.function()),
    )


def test_part_1_alone_keeps_the_rows(sessions: Callable[[], Session], connection: Connection) -> None:
    """The scoring expression without part 2 (what text_inline creates) ranks as 0031 and 0032 do."""
    store(sessions, [f"c{i % 5}x m{i % 7}x r{i % 97}x u{i}q" for i in range(SMALL + 300)], "part1")
    for query in ("c1x m2x r5x", "c0x c1x c2x m3x", "r7x"):
        with replaced_ranking(connection, text_inline.function()):
            found = ranking(connection, "part1", query, 50, floor=0.0)
        assert found == ranking(connection, "part1", query, 50, floor=0.0)
        assert_same(found, reference(connection, "part1", query), 50, 0.0)
