"""Revision 0031 (memagent.store.text_order): the ranking takes the query's words in the order of the bound of
a memory holding each once; the result must stay the exact BM25 top, the very rows revision 0030 returned.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from memagent.store import text_order, text_prefixes, text_repeats
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.text_floor import FLOOR
from memagent.store.text_ranking import SMALL
from tests.test_text_ranking import assert_same, ranking, reference, replaced_ranking, store
from tests.test_text_tiers import Kept
from tests.test_text_tiers_migration import ranking_both_ways

_LEX_SET = "    IF lex IS NULL THEN\n        RETURN;\n    END IF;\n"
_PROBE = "    RAISE NOTICE 'probe words %', array_to_string(lex, ' ');\n"


def corpus() -> list[str]:
    """ "might" in 400 memories, one of them saying it eight times and nothing else (its bound at its largest
    count the higher); "state" in 250, one of them saying it alone (rarer: its bound held once the higher);
    fillers to make the namespace larger than a small one."""
    texts = [f"might a{i}q b{i}q" for i in range(399)] + [" ".join(["might"] * 8)]
    texts += [f"state c{i}q d{i}q" for i in range(249)] + ["state"]
    return texts + [f"f{i}q g{i}q h{i}q" for i in range(1600)]


def words_taken(conn: Connection, function: str, query: str) -> list[str]:
    """The order in which `function` (a ranking's CREATE statement) takes the query's words."""
    assert function.count(_LEX_SET) == 1
    notices = Kept()
    conn.connection.dbapi_connection.notices = notices  # type: ignore[union-attr]
    with replaced_ranking(conn, function.replace(_LEX_SET, _LEX_SET + _PROBE)):
        ranking(conn, "order", query, 50)
    found = [re.search(r"probe words (.*)", notice) for notice in notices.items]
    return next(match.group(1).split() for match in found if match)


def test_a_word_said_many_times_in_one_memory_no_longer_goes_first(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Where the two orders differ, the rarer word goes first; the top is the exact one, and the same rows as
    revision 0030's, whichever the query's order and the depth."""
    store(sessions, corpus(), "order")
    assert len(corpus()) > SMALL
    assert words_taken(connection, text_prefixes.function(), "state might") == ["might", "state"]
    assert words_taken(connection, text_order.function(), "state might") == ["state", "might"]
    for query in ("state might", "might state", "might state a1q c2q f3q", "might"):
        everything = reference(connection, "order", query)
        for depth in (1, 10, 60, 500):
            for floor in (0.0, FLOOR):
                found = ranking(connection, "order", query, depth, floor=floor)
                assert_same(found, everything, depth, floor)
                with replaced_ranking(connection, text_prefixes.function()):  # revision 0030's
                    assert ranking(connection, "order", query, depth, floor=floor) == found


def test_the_revision_both_ways(embedded: EmbeddedPostgres) -> None:
    """0030 → 0031 → 0030: the function's body is each revision's, its owner, grants, pinned path and
    security the same throughout."""
    ranking_both_ways(
        embedded,
        "memagent_order_migration",
        ("0030", text_prefixes.function()),
        ("0031", text_order.function()),
    )


def test_0029_to_0031_and_back_keeps_the_pin_and_the_grant(embedded: EmbeddedPostgres) -> None:
    """0029 → 0031 → 0029 → head in one go (an outside review's test, kept)."""
    ranking_both_ways(
        embedded,
        "memagent_order_migration_both",
        ("0029", text_repeats.function()),
        ("0031", text_order.function()),
    )
