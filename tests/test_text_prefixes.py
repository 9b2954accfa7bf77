"""Revision 0030 (memagent.store.text_prefixes): pass 2 searches the full-text index by its sets' first three
words, however few sets; the ranking must stay the exact BM25 top, the very rows revision 0027 returned.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.store import text_order, text_prefixes, text_repeats
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.text_ranking import SMALL
from tests.test_text_ranking import (
    assert_same,
    memories_of,
    ranking,
    ranking_and_reads,
    reference,
    replaced_ranking,
)
from tests.test_text_tiers import COMMON, MEDIUM, Kept, check, queries, repeated_corpus, split_store
from tests.test_text_tiers_migration import ranking_both_ways

# The most words of an AND among the tsqueries pass 2 holds (an OR of words, the fallback, counts one).
_LONGEST = "(SELECT max(array_length(string_to_array(x::text, ' & '), 1)) FROM unnest(q_sets) x)"

# The production function with notices of the sets pass 2 enumerated and of what it searched.
_COUNT = "coalesce(array_length(q_sets, 1), 0)"
_PROBES = (
    (
        "    IF coalesce(array_length(q_prefixes, 1), 0) BETWEEN 1 AND 64 THEN\n",
        f"    RAISE NOTICE 'probe enumerated % longest %', {_COUNT}, {_LONGEST};\n"
        "    IF coalesce(array_length(q_prefixes, 1), 0) BETWEEN 1 AND 64 THEN\n",
    ),
    (
        "    more_ids := NULL;  -- (not an earlier step's, already merged into ids)\n",
        f"    RAISE NOTICE 'probe searched % longest %', {_COUNT}, {_LONGEST};\n"
        "    more_ids := NULL;  -- (not an earlier step's, already merged into ids)\n",
    ),
)


def probed() -> str:
    sql = text_order.function()  # the current ranking (0031: 0030's, its words in another order)
    for before, after in _PROBES:
        assert sql.count(before) == 1, before
        sql = sql.replace(before, after)
    return sql


def _probed(notices: list[str], what: str) -> list[tuple[int, int]]:
    """(how many tsqueries, the most words of an AND among them) of each probe notice of `what`."""
    found = re.findall(rf"probe {what} (\d+) longest (\d+|<NULL>)", " ".join(notices))
    return [(int(count), 0 if longest == "<NULL>" else int(longest)) for count, longest in found]


def test_sets_sharing_their_first_three_words_are_searched_by_them_once(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Questions of four to eight common words beside a rare one, and the fuzz's: pass 2 enumerates sets of
    more than three words, and searches fewer tsqueries than it has sets where sets share their first three
    words (0027 searched each of up to 64 sets); the exact top, ids and bits, and the same rows as revision
    0027's function."""
    rng = random.Random(30)
    split_store(sessions, rng, repeated_corpus(rng, SMALL + 600), "prefixes")
    docs = memories_of(connection, "prefixes")
    assert len(docs) > SMALL
    qs = [
        " ".join(rng.sample(COMMON, rng.randint(4, 8)) + rng.sample(MEDIUM, rng.randint(0, 2)))
        + f" r{rng.randrange(120)}x"
        for _ in range(10)
    ]
    qs += queries(rng, 12)
    check(connection, "prefixes", docs, qs, exact=True)

    for query in qs:
        for depth in (10, 60):
            for floor in (0.0, 0.2):
                found = ranking(connection, "prefixes", query, depth, floor=floor)
                with replaced_ranking(connection, text_repeats.function()):  # revision 0027's
                    assert ranking(connection, "prefixes", query, depth, floor=floor) == found

    connection.execute(text(probed()))
    notices = Kept()
    connection.connection.dbapi_connection.notices = notices  # type: ignore[union-attr]
    check(connection, "prefixes", docs, qs)
    enumerated = _probed(notices.items, "enumerated")
    searched = _probed(notices.items, "searched")
    assert len(enumerated) == len(searched) > 0
    print(f"pass 2: {len(enumerated)} enumerations")
    assert any(longest > 3 for _, longest in enumerated)  # the case is reached
    pairs = list(zip(enumerated, searched, strict=True))
    assert all(now <= max(then, 1) and now <= 64 for (then, _), (now, _) in pairs)
    assert any(
        now < then <= 64 for (then, _), (now, _) in pairs
    )  # prefixes shared by a few sets searched once


def test_the_revision_both_ways(embedded: EmbeddedPostgres) -> None:
    """0029 → 0030 → 0029: the function's body is each revision's, its owner, grants, pinned path and
    security the same throughout."""
    ranking_both_ways(
        embedded,
        "memagent_prefixes_migration",
        ("0029", text_repeats.function()),
        ("0030", text_prefixes.function()),
    )


# Three words that nearly always go together, a fourth seldom with them (an outside review's case).
_TOGETHER = """
INSERT INTO memories (namespace, session_id, content, embedding_model, content_hash)
SELECT 'together', 's', c, 'fake', md5(c) FROM (
    SELECT 'rzq g' || i || 'q h' || i || 'q' AS c FROM generate_series(1, 300) i
    UNION ALL SELECT 'alpha beta gamma f' || i || 'q' FROM generate_series(1, 6000) i
    UNION ALL SELECT 'delta e' || i || 'q' FROM generate_series(1, 8000) i
    UNION ALL SELECT 'alpha beta gamma delta d' || i || 'q' FROM generate_series(1, 20) i
    UNION ALL SELECT 'x' || i || 'q y' || i || 'q z' || i || 'q' FROM generate_series(1, 2000) i
) t
"""


def test_a_set_alone_with_its_prefix_is_searched_whole(connection: Connection) -> None:
    """Pass 2's one set is "alpha & beta & gamma & delta" (20 memories), its first three words held together
    by 6,020: the set is searched, not its prefix, and the ranking reads no more than 0027's did."""
    connection.execute(text(_TOGETHER))
    query = "rzq alpha beta gamma delta"
    everything = reference(connection, "together", query)
    for depth in (10, 50):
        for floor in (0.0, 0.2):
            found, read = ranking_and_reads(connection, "together", query, depth, floor)
            with replaced_ranking(connection, text_repeats.function()):  # revision 0027's
                found_then, read_then = ranking_and_reads(connection, "together", query, depth, floor)
            assert found == found_then
            assert_same(found, everything, depth, floor)
            assert read <= read_then < 1000, (read, read_then)
