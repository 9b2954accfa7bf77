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
    bm25,
    memories_of,
    query_terms,
    ranking,
    ranking_and_reads,
    reference,
    replaced_ranking,
    store,
)
from tests.test_text_tiers import COMMON, MEDIUM, Kept, check, queries, repeated_corpus, split_store
from tests.test_text_tiers_migration import ranking_both_ways


def long_memory(rng: random.Random, words: int) -> str:
    """A memory of `words` distinct fillers and a few query words, some said again and again."""
    fillers = [f"fillerwordnumber{rng.randrange(10**6)}k" for _ in range(words)]
    said = [rng.choice(COMMON + MEDIUM) for _ in range(rng.randint(1, 6))] * rng.randint(1, 4)
    return " ".join(fillers + said)


def test_scores_are_the_same_bits_said_once_many_times_or_in_a_long_query(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Words said once to 300 times (more positions than a tsvector keeps), odd words (URLs with quotes,
    multibyte), memories whose tsvector is compressed or too long to be read as stored, queries of exactly
    32 words (one expression) and of 33 and 40 (the subquery): the ranking's scores are the old statement's
    bits over every memory (tests/test_text_tiers.py's BITWISE), and its rows those of revision 0031."""
    rng = random.Random(32)
    texts = repeated_corpus(rng, SMALL + 500)
    texts += [" ".join(["c0x"] * count + ["m1x"]) for count in (6, 40, 255, 256, 300)]
    texts += ["see http://ex.com/a'b(c)$1,x c1x", "http://h.com/%s%L'' café c1x café", "日本語 c2x"]
    texts += [long_memory(rng, 700) for _ in range(12)] + [long_memory(rng, 250) for _ in range(12)]
    split_store(sessions, rng, texts, "inline")
    docs = memories_of(connection, "inline")
    assert len(docs) > SMALL
    not_as_stored = text(
        "SELECT count(*) FILTER (WHERE pg_column_compression(content_tsv) IS NOT NULL),"
        " count(*) FILTER (WHERE pg_column_size(content_tsv) >= 2048)"
        " FROM memories WHERE namespace = 'inline'"
    )
    compressed, large = connection.execute(not_as_stored).one()
    assert compressed > 0 and large > compressed, (compressed, large)  # both kinds are there
    words = COMMON + MEDIUM  # every one held by the namespace
    qs = [*queries(rng, 10), "c0x m1x", "http://ex.com/a'b(c)$1,x c1x", "café 日本語 c2x"]
    qs += [" ".join(rng.sample(words, n)) for n in (32, 33)]
    qs += [" ".join(rng.sample([*words, *(f"r{i}x" for i in range(40))], 40))]
    lexemes = text("SELECT count(DISTINCT lexeme) FROM unnest(to_tsvector('english', :q))")
    assert [connection.execute(lexemes, {"q": q}).scalar_one() for q in qs[-3:-1]] == [32, 33]
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


# An outside review's namespace (compacted): words going in pairs and threes nearly always together, common
# and rare ones, words said up to 300 times, long memories, three sessions.
_COMMON = [f"c{i}x" for i in range(10)]
_PAIRS = [(f"p{i}a", f"p{i}b") for i in range(12)]
_TRIPLES = [(f"t{i}a", f"t{i}b", f"t{i}c") for i in range(4)]
_MEDIUM = [f"m{i}x" for i in range(40)]


def _correlated(rng: random.Random, count: int) -> list[str]:
    pools: list[list[tuple[str, ...]]] = [
        [(w,) for w in _COMMON],
        list(_PAIRS),
        list(_TRIPLES),
        [(w,) for w in _MEDIUM],
        [(f"r{i}x",) for i in range(300)],
    ]
    out = []
    for i in range(count):
        shape = rng.random()
        words: list[str] = []
        for _ in range(rng.randint(1, 2) if shape < 0.1 else rng.randint(2, 12)):
            pool = rng.choices(pools, [2.5, 1.2, 0.5, 1.5, 0.6])[0]
            item = pool[min(int(rng.expovariate(0.3)), len(pool) - 1)]
            for word in item if rng.random() < 0.95 else (rng.choice(item),):
                words += [word] * (1 if rng.random() > 0.15 else rng.choice([2, 3, 4, 10, 300]))
        if shape >= 0.9:
            words += [f"f{rng.randrange(20000)}z" for _ in range(rng.randint(100, 600))]
        rng.shuffle(words)
        out.append(" ".join([*words, f"u{i}q"]))
    return out


def _path(
    conn: Connection, function: str, query: str, session: str | None, depth: int
) -> tuple[str, list[tuple[float, int]]]:
    """Which way pass 2 went (its sets, any of the rarest words, nothing to search) and the rows."""
    probe = (
        "    RAISE NOTICE 'probe path %', CASE WHEN q_sets[1] IS NULL THEN 'none'"
        " WHEN cardinality(q_sets) = 1 AND q_sets[1]::text LIKE '%|%' THEN 'anyof' ELSE 'sets' END;\n"
    )
    notices = Kept()
    conn.connection.dbapi_connection.notices = notices  # type: ignore[union-attr]
    with replaced_ranking(conn, function.replace(_PROBE_AT, probe + _PROBE_AT)):
        found = ranking(conn, "correlated", query, depth, session_id=session, floor=0.0)
    paths = [m.group(1) for m in (re.search(r"probe path (\w+)", n) for n in notices.items) if m]
    return (paths[0] if paths else "pass 1"), found


def test_pass_2_takes_the_path_it_took_with_sets_left_out(connection: Connection) -> None:
    """Over words that go together, scoped to a session or not: where 0031 searched any of the rarest words,
    0032 does too (counted out, the covered sets once kept it on 48 searches, and the planner read a whole
    session: 84 ms against 12); where 0031 searched sets, 0032 searches them less the covered ones, or
    nothing; the rows are 0031's and the exact top."""
    rng = random.Random(2)
    texts = _correlated(rng, 6000)
    connection.execute(
        text(
            "INSERT INTO memories (namespace, session_id, content, embedding_model, content_hash)"
            " SELECT 'correlated', s, c, 'fake', md5(c || s)"
            " FROM unnest(CAST(:c AS text[]), CAST(:s AS text[])) AS t(c, s)"
        ),
        {"c": texts, "s": [rng.choice(["s1", "s2", "s2", "s3", "s3", "s3"]) for _ in texts]},
    )
    connection.execute(text("ANALYZE memories"))
    words = _COMMON[3:] + [w for t in _PAIRS + _TRIPLES for w in t] + _MEDIUM[:18]
    qs = ["p5b p0b p9a m1x c9x p0a p8a", "p1a p7a p8b c5x p2b absentword77 c5x m8x t3b p7b c3x"]
    qs += [
        " ".join(rng.choices(words, k=rng.choice([3, 5, 7, 9, 11])) + list(rng.choice(_PAIRS)))
        for _ in range(24)
    ]
    docs = memories_of(connection, "correlated")
    seen: set[tuple[str, str]] = set()
    for query in qs:
        for session in ("s1", None):
            everything = bm25(docs, query_terms(connection, query), session)
            for depth in (1, 10):
                now, found = _path(connection, text_covered.function(), query, session, depth)
                then, found_then = _path(connection, text_order.function(), query, session, depth)
                assert found == found_then, (query, session, depth)
                assert_same(found, everything, depth, 0.0)
                assert now == then or (then, now) == ("sets", "none"), (query, session, depth, then, now)
                seen.add((then, now))
    assert ("anyof", "anyof") in seen and ("sets", "sets") in seen, seen  # both paths are reached
