"""Revision 0027 (memagent.store.text_repeats): short of `depth`, pass 1 reads a common word's memories that
hold it more than once first; the ranking must stay the exact BM25 top, whichever way that goes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.store import text_pairs, text_repeats
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.text_floor import FLOOR
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
from tests.test_text_tiers import COMMON, Kept, check, queries, repeated_corpus, split_store
from tests.test_text_tiers_migration import ranking_both_ways

QUESTION = "What Console does Nate own?"  # to the index: "nate" ("own" is a stop word, "console" unheld)


def nate_corpus(twice: int) -> list[str]:
    """3,000 memories saying "nate" once (four words long), `twice` saying it twice (three words)."""
    texts = [f"nate f{i}a g{i}b h{i}c" for i in range(3000)]
    return texts + [f"nate nate t{i}d" for i in range(twice)]


def test_a_common_word_said_twice_completes_the_top_alone(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """200 memories say "nate" twice: the top 50 is theirs, and they are what the ranking reads, not the
    3,200 holders of "nate" that revision 0026 read; the same exact top, with and without the floor."""
    store(sessions, nate_corpus(200), "nate-twice")
    everything = reference(connection, "nate-twice", QUESTION)
    assert len(everything) == 3200

    for floor in (FLOOR, 0.0):
        found, read = ranking_and_reads(connection, "nate-twice", QUESTION, 50, floor)
        with replaced_ranking(connection, text_pairs.function()):  # revision 0026's
            found_then, read_then = ranking_and_reads(connection, "nate-twice", QUESTION, 50, floor)
        assert found == found_then
        assert_same(found, everything, 50, floor)
        assert read <= 400 and read_then >= 3200, (read, read_then)


def test_too_few_repeats_are_put_back_and_every_holder_read(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """20 memories say it twice, fewer than `depth`: they are put back, and the step reads every holder as
    before (scored once each: the top holds no memory twice)."""
    store(sessions, nate_corpus(20), "nate-few")
    everything = reference(connection, "nate-few", QUESTION)
    for depth in (10, 50, 400):
        for floor in (FLOOR, 0.0):
            found = ranking(connection, "nate-few", QUESTION, depth, floor=floor)
            assert len({memory_id for _, memory_id in found}) == len(found)
            assert_same(found, everything, depth, floor)


# The production function with notices of which way the step went (nothing else changed).
_PROBE = (
    "            repeats_word := n_first + 1;\n        END IF;\n",
    "            repeats_word := n_first + 1;\n            RAISE NOTICE 'probe repeats kept';\n"
    "        ELSE\n            RAISE NOTICE 'probe repeats back';\n        END IF;\n",
)


def test_repeats_first_fuzzed_against_the_reference(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Memories short and long, words said one to five times (revision 0021's fuzz corpus, and a common word
    nearly always said once); questions of common words, alone, in pairs, beside rare and unheld words: the
    exact top, ids and bits, and both ways of the step reached."""
    rng = random.Random(27)
    # and a word in 1,300 memories, said twice in 4 of them (fewer than most depths: put back)
    once = [f"oftx f{i}k" + f" {rng.choice(COMMON)}" * rng.randint(0, 2) for i in range(1300)]
    split_store(
        sessions,
        rng,
        repeated_corpus(rng, SMALL + 600) + once + [f"oftx oftx d{i}k" for i in range(4)],
        "repeats",
    )
    docs = memories_of(connection, "repeats")
    qs = [rng.choice(COMMON) for _ in range(6)] + ["oftx", f"oftx {rng.choice(COMMON)}", "r7x oftx"]
    qs += [" ".join(rng.sample(COMMON, 2)) for _ in range(6)]
    qs += [f"r999x {rng.choice(COMMON)} {rng.choice(COMMON)}" for _ in range(4)]
    qs += [f"r{rng.randrange(120)}x {rng.choice(COMMON)}" for _ in range(6)]
    qs += queries(rng, 10)
    check(connection, "repeats", docs, qs, exact=True)

    probed = text_repeats.function()
    assert probed.count(_PROBE[0]) == 1
    connection.execute(text(probed.replace(*_PROBE)))
    notices = Kept()
    connection.connection.dbapi_connection.notices = notices  # type: ignore[union-attr]
    check(connection, "repeats", docs, qs)
    kept = sum("probe repeats kept" in notice for notice in notices.items)
    back = sum("probe repeats back" in notice for notice in notices.items)
    print(f"repeats kept {kept}, put back {back}")
    assert kept > 0 and back > 0


def test_the_revision_both_ways(embedded: EmbeddedPostgres) -> None:
    """0026 → 0027 → 0026: the function's body is each revision's, its owner, grants, pinned path and
    security the same throughout (an outside review's check, kept)."""
    ranking_both_ways(
        embedded,
        "memagent_repeats_migration",
        ("0026", text_pairs.function()),
        ("0027", text_repeats.function()),
    )
