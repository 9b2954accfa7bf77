"""BM25 in the database (revision 0011): statistics kept by triggers, and MaxScore pruning that stays exact.

The reference is BM25 computed here, in Python, from the same tsvectors over every memory in scope; the
database's ranking must give the same top `depth`, with the same scores, of the memories scoring at least
FLOOR times the best (revision 0016, memagent.store.text_floor).
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.orm import Session

from memagent.api import Memory
from memagent.config import Settings
from memagent.errors import DatabaseError
from memagent.store import schema, text_kinds
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.memories import MemoryRepository, NewMemory
from memagent.store.text_floor import FLOOR
from memagent.store.text_ranking import K1, SMALL, B
from memagent.store.text_terms import LONGEST
from memagent.usecases.service import MemoryService
from tests.conftest import DIM, fake_embedder, make_database
from tests.fake_openai import FakeOpenAI, fake_embedding

pytestmark = pytest.mark.both_drivers

# The ranking over every kind of memory, current ones (revision 0013's view arguments at their defaults).
RANKING = "memagent_text_ranking({}, NULL, NULL, false, 0)"

# A skewed vocabulary: a few words in most memories, most words in a few, as in a conversation.
WORDS = [
    "caroline",
    "melanie",
    "painting",
    "camping",
    "adoption",
    "research",
    "support",
    "group",
    "pottery",
    "children",
    "beach",
    "guitar",
    "concert",
    "marathon",
    "garden",
    "kitchen",
    "recipe",
    "travel",
    "museum",
    "library",
    "violin",
    "sunset",
    "mountain",
    "river",
    "festival",
    "volunteer",
    "shelter",
    "puppy",
    "kitten",
    "bakery",
    "chess",
    "bicycle",
    "photograph",
    "journal",
    "hospital",
    "school",
    "teacher",
    "student",
    "friend",
    "family",
    "weekend",
    "holiday",
    "birthday",
    "wedding",
]


def corpus(rng: random.Random, count: int) -> list[str]:
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(WORDS))]
    texts: set[str] = set()
    while len(texts) < count:
        length = rng.randint(2, 14)
        texts.add(" ".join(rng.choices(WORDS, weights, k=length)))
    return sorted(texts)


def store(sessions: Callable[[], Session], texts: list[str], namespace: str, **kw: Any) -> None:
    session = sessions()
    MemoryRepository(session).add_many(
        [
            NewMemory(
                namespace, kw.get("session_id", "s"), t, fake_embedding(t, DIM), "fake", {}, kw.get("at")
            )
            for t in texts
        ]
    )
    session.commit()


def memories_of(conn: Connection, namespace: str) -> dict[int, tuple[str, dict[str, int]]]:
    """Every memory of the namespace: {id: (session, {lexeme: tf})}."""
    rows = conn.execute(
        text(
            "SELECT m.id, m.session_id, array_agg(u.lexeme) AS lexemes,"
            " array_agg(coalesce(array_length(u.positions, 1), 1)) AS tfs"
            " FROM memories m CROSS JOIN LATERAL unnest(m.content_tsv) u"
            " WHERE m.namespace = :ns GROUP BY m.id"
        ),
        {"ns": namespace},
    ).all()
    return {row.id: (row.session_id, dict(zip(row.lexemes, row.tfs, strict=True))) for row in rows}


def query_terms(conn: Connection, query: str) -> set[str]:
    """The query's lexemes, as the ranking parses it."""
    return set(
        conn.execute(
            text("SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', :q))"), {"q": query}
        ).scalars()
    )


def reference(
    conn: Connection, namespace: str, query: str, session_id: str | None = None
) -> list[tuple[float, int]]:
    """Exact BM25 of every matching memory in scope (namespace statistics), best first."""
    return bm25(memories_of(conn, namespace), query_terms(conn, query), session_id)


def bm25(
    docs: dict[int, tuple[str, dict[str, int]]], terms: set[str], session_id: str | None = None
) -> list[tuple[float, int]]:
    """Exact BM25 of the memories {id: (session, {lexeme: tf})} holding one of `terms`, best first."""
    if len(docs) > SMALL:  # through the index, longer words are not searched (revision 0017)
        terms = {term for term in terms if len(term.encode()) <= LONGEST}
    n = len(docs)
    avgdl = max(sum(len(tf) for _, tf in docs.values()) / n, 1.0)  # length: distinct lexemes
    df = Counter(lexeme for _, tf in docs.values() for lexeme in tf)
    scored = []
    for memory_id, (session, tf) in docs.items():
        if session_id is not None and session != session_id:
            continue
        matched = terms & tf.keys()
        if not matched:
            continue
        score = 0.0
        for lexeme in matched:
            idf = math.log(1 + (n - df[lexeme] + 0.5) / (df[lexeme] + 0.5))
            f = tf[lexeme]
            score += idf * f * (K1 + 1) / (f + K1 * (1 - B + B * len(tf) / avgdl))
        scored.append((-score, memory_id))
    return [(-negative, memory_id) for negative, memory_id in sorted(scored)]


def ranking(
    conn: Connection,
    namespace: str,
    query: str,
    depth: int,
    session_id: str | None = None,
    floor: float = FLOOR,
) -> list[tuple[float, int]]:
    rows = conn.execute(
        text(
            "SELECT id, score FROM memagent_text_ranking("
            ":ns, :session, NULL, :q, :depth, NULL, NULL, false, CAST(:floor AS float8))"
        ),
        {"ns": namespace, "session": session_id, "q": query, "depth": depth, "floor": floor},
    ).all()
    return [(float(row.score), int(row.id)) for row in rows]


def ranking_and_reads(
    conn: Connection, namespace: str, query: str, depth: int, floor: float = FLOOR
) -> tuple[list[tuple[float, int]], int]:
    """ranking(), and how many memories it read (rows fetched from the table, this transaction's count)."""
    fetched = text("SELECT pg_stat_get_xact_tuples_fetched(CAST('memories' AS regclass))")
    before = int(conn.execute(fetched).scalar_one())
    found = ranking(conn, namespace, query, depth, floor=floor)
    return found, int(conn.execute(fetched).scalar_one()) - before


@contextmanager
def replaced_ranking(conn: Connection, function: str) -> Iterator[None]:
    """An earlier revision's ranking function (its CREATE statement) in place of the current one, until
    the block ends (a savepoint)."""
    conn.execute(text("SAVEPOINT earlier_ranking"))
    conn.execute(text(function))
    try:
        yield
    finally:
        conn.execute(text("ROLLBACK TO SAVEPOINT earlier_ranking"))


def revision_0025_ranking(conn: Connection) -> AbstractContextManager[None]:
    """Revision 0025's ranking function in place of the current one, until the block ends."""
    return replaced_ranking(conn, text_kinds.function())


def assert_same(
    found: list[tuple[float, int]], everything: list[tuple[float, int]], depth: int, floor: float = FLOOR
) -> None:
    """found is a top `depth` of the reference above the floor: the same scores, each id with its score."""
    kept = [(score, memory_id) for score, memory_id in everything if score >= floor * everything[0][0]]
    assert [round(score, 9) for score, _ in found] == [round(score, 9) for score, _ in kept[:depth]]
    scores = {memory_id: score for score, memory_id in everything}
    for score, memory_id in found:
        assert math.isclose(score, scores[memory_id], rel_tol=1e-9)


@pytest.mark.parametrize("depth", [1, 5, 50])
def test_ranking_is_the_exact_bm25_top(
    sessions: Callable[[], Session], connection: Connection, depth: int
) -> None:
    """MaxScore skips memories that cannot reach the top; the result equals scoring every memory, with
    the floor (hybrid recall's) and without it (text mode's)."""
    rng = random.Random(depth)
    store(sessions, corpus(rng, SMALL + 400), "bm25")  # large enough for the pruned path
    store(sessions, corpus(random.Random(99), 200), "other")  # another namespace's statistics stay out
    for _ in range(40):  # up to 24 words: many term sets reach theta, and pass 2 takes the rarest terms
        query = " ".join(rng.sample(WORDS, rng.choice([rng.randint(1, 6), rng.randint(7, 24)])))
        everything = reference(connection, "bm25", query)
        for floor in (FLOOR, 0.0):
            assert_same(ranking(connection, "bm25", query, depth, floor=floor), everything, depth, floor)


def test_memories_holding_only_a_word_most_memories_hold_are_not_text_matches(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Every memory holds "note"; the rarer word's few memories are the whole answer (revision 0016),
    whether or not one of them also holds the common word."""
    topics = ["garden", "kitchen", "river", "museum", "violin"]
    common = [f"weekly note {i} about the {topics[i % 5]}" for i in range(SMALL + 400)]
    rare = ["zebra crossing downtown", "a zebra at the zoo", "zebra stripes"]
    store(sessions, common + rare, "floor-apart")
    store(sessions, common + rare + ["a note on the zebra"], "floor-together")
    for namespace, expected in (("floor-apart", 3), ("floor-together", 4)):
        found = ranking(connection, namespace, "what about the zebra note", 50)
        assert len(found) == expected
        assert_same(found, reference(connection, namespace, "what about the zebra note"), 50)
        contents = connection.execute(
            text("SELECT content FROM memories WHERE id = ANY(:ids)"), {"ids": [i for _, i in found]}
        ).scalars()
        assert all("zebra" in content for content in contents)
        # A query of the common word alone still fills the depth: every memory scores about the same.
        assert len(ranking(connection, namespace, "note", 50)) == 50
        # Without a floor (text mode), the top 50 is completed from the common word, exactly.
        exact = ranking(connection, namespace, "what about the zebra note", 50, floor=0.0)
        assert len(exact) == 50
        assert_same(exact, reference(connection, namespace, "what about the zebra note"), 50, 0.0)


@pytest.mark.parametrize("depth", [1, 5, 50])
def test_a_chat_history_is_ranked_exactly_with_its_rare_words_scored_first(
    sessions: Callable[[], Session], connection: Connection, depth: int
) -> None:
    """A chat's history (benchmarks/chat_turn.py's shape): every memory holds "question", a few hold a
    number or "turn". The rarest words' holders are scored at once, pass 2 looks only at the words not yet
    covered (revision 0019), and the result stays exact, with and without the floor; a query of rare words
    only, fewer memories than the depth holding them, ends once they are scored."""
    history = [f"User: question {i}\nAssistant: answer {i}" for i in range(SMALL + 300)]
    history += [
        f"User: turn {i}: what did I say about question {i * 7}?\nAssistant: I remember." for i in range(60)
    ]
    store(sessions, history, "chat-shaped")
    queries = [f"turn {i}: what did I say about question {i * 7}?" for i in (3, 17, 58, 61, 900)]
    queries += ["what did I say about question 12 and 14", "question answer", "15 16", "turn 5 6"]
    for query in queries:
        everything = reference(connection, "chat-shaped", query)
        for floor in (FLOOR, 0.0):
            found = ranking(connection, "chat-shaped", query, depth, floor=floor)
            assert_same(found, everything, depth, floor)
    assert len(ranking(connection, "chat-shaped", "15 16", 50, floor=0.0)) == 4  # all of them, then done


def test_a_pair_of_common_words_is_not_read_to_set_the_threshold(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Revision 0026: fewer than `depth` memories hold the three rarest words, and the second and third
    ("note", "garden") are together in 2,100 memories, far more than hold the rarest ("zebra", 300). Pass 1
    scores the pairs with "zebra" for its threshold, not the 2,100: the ranking reads fewer memories than
    that pair holds (revision 0025's read them all), and its top is the exact one, with and without the
    floor."""
    texts = [f"note garden f{i}a" for i in range(2100)]
    texts += [f"zebra note garden z{i}a" for i in range(20)]
    texts += [f"zebra note z{i}b" for i in range(40)] + [f"zebra garden z{i}c" for i in range(40)]
    texts += [f"zebra z{i}d h{i}e" for i in range(200)]
    store(sessions, texts, "common-pair")
    query = "did the zebra note the garden"
    everything = reference(connection, "common-pair", query)

    for floor in (FLOOR, 0.0):
        found, read = ranking_and_reads(connection, "common-pair", query, 50, floor)
        assert read < 1000
        assert_same(found, everything, 50, floor)


def test_skipping_the_common_pair_never_reads_more_at_any_depth(connection: Connection) -> None:
    """Found by an outside read of revision 0026's first version, which read the pair of common words only
    when it was expected to hold no more memories than the rarest word: at a depth above the rarest word's
    300 holders, the step that ran instead read the holders of the first two words (6,392 memories, where
    revision 0025 read 4,069). The pair is now weighed against what that step reads: at depths 50 and 500
    the ranking reads no more memories than revision 0025's, and gives the same exact top."""
    connection.execute(
        text(
            "INSERT INTO memories (namespace, session_id, content, embedding_model, content_hash)"
            " SELECT 'pair-depth', 's', c, 'fake', md5(c) FROM ("
            "  SELECT CASE WHEN i <= 300 THEN 'zebra ' ELSE '' END"
            "   || CASE WHEN abs(hashint4(i)) % 100 < 30 THEN 'maria ' ELSE '' END"
            "   || CASE WHEN abs(hashint4(i + 100000)) % 100 < 30 THEN 'goes ' ELSE '' END"
            "   || 'u' || i || 'q f' || abs(hashint4(i + 200000)) % 1000 || 'q' AS c"
            "  FROM generate_series(1, 20000) i) t"
        )
    )
    connection.execute(text("ANALYZE memories"))
    query = "zebra maria goes"
    everything = reference(connection, "pair-depth", query)

    for depth in (50, 500):
        found, rows = ranking_and_reads(connection, "pair-depth", query, depth, 0.0)
        with revision_0025_ranking(connection):
            found_then, rows_then = ranking_and_reads(connection, "pair-depth", query, depth, 0.0)
        assert found == found_then
        assert_same(found, everything, depth, 0.0)
        assert rows <= rows_then, (depth, rows, rows_then)


def test_too_many_sets_are_searched_by_their_rarest_words(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Revision 0026: when pass 2 has more sets than it searches one by one, it searched the index for
    every memory holding any word that can still matter; now, the sets all known, for their first words.
    Queries of 1-24 words over a skewed vocabulary (test_ranking_is_the_exact_bm25_top's): the same top as
    revision 0025's function, the exact one, reading fewer memories in all, and under half as many where
    the fallback was taken (333 instead of 1,006 for one of them)."""
    rng = random.Random(1)
    store(sessions, corpus(rng, SMALL + 400), "many-sets")
    queries = [
        " ".join(rng.sample(WORDS, rng.choice([rng.randint(1, 6), rng.randint(7, 24)]))) for _ in range(40)
    ]

    cases = [(query, depth) for query in queries for depth in (1, 5)]
    now = [ranking_and_reads(connection, "many-sets", query, depth, 0.0) for query, depth in cases]
    with revision_0025_ranking(connection):
        then = [ranking_and_reads(connection, "many-sets", query, depth, 0.0) for query, depth in cases]
    for (query, depth), (found, _), (found_then, _) in zip(cases, now, then, strict=True):
        assert found == found_then
        assert_same(found, reference(connection, "many-sets", query), depth, 0.0)
    assert sum(rows for _, rows in now) < sum(rows for _, rows in then)
    assert any(rows * 2 < rows_then for (_, rows), (_, rows_then) in zip(now, then, strict=True))


def test_pass_2_with_no_set_to_read_returns_each_memory_once(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Found by an outside review of revision 0019: bounds summed in another order fall one unit of the last
    bit short of the threshold, so pass 2 has no set to read; the ranking must then return what it scored,
    not an earlier step's results a second time (which pushed a true top memory out)."""
    fill = iter(range(10**6))
    others = []
    for word, count in (("ccc", 149), ("ddd", 149), ("eee", 149), ("bbb", 149), ("aaa", 150)):
        others += [f"{word} f{(i := next(fill))}a g{i}b" for _ in range(count)]
    while len(others) < SMALL + 98:
        others.append(f"f{(i := next(fill))}a g{i}b h{i}c")
    store(sessions, ["ccc bbb aaa", "ddd eee bbb aaa"], "one-bit", session_id="s")
    store(sessions, others, "one-bit", session_id="o")
    query = "aaa bbb ccc ddd eee"
    for depth in (1, 2, 5):
        found = ranking(connection, "one-bit", query, depth, session_id="s", floor=0.0)
        assert len({memory_id for _, memory_id in found}) == len(found) == min(depth, 2)
        assert_same(found, reference(connection, "one-bit", query, session_id="s"), depth, 0.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_queries_over_sessions_are_ranked_exactly(
    sessions: Callable[[], Session], connection: Connection, seed: int
) -> None:
    """Common, medium and rare words, a word repeated in a memory, three sessions: 20 random queries of 1-12
    words (some absent from the namespace) give the reference's top at every depth, with and without the
    floor and a session, each memory once (an outside review's fuzzing, kept)."""
    rng = random.Random(seed)
    common, medium, rare = (
        [f"c{i}x" for i in range(8)],
        [f"m{i}x" for i in range(30)],
        [f"r{i}x" for i in range(120)],
    )
    texts: set[str] = set()
    while len(texts) < SMALL + 300:
        words = rng.choices(common, k=rng.randint(0, 4)) + rng.choices(medium, k=rng.randint(0, 3))
        words += rng.choices(rare, k=rng.randint(1, 2)) if rng.random() < 0.3 else []
        words += [f"u{len(texts)}q"] * rng.randint(0, 2)
        if words:
            rng.shuffle(words)
            texts.add(" ".join(words))
    by_session: dict[str, list[str]] = {"s1": [], "s2": [], "s3": []}
    for t in sorted(texts):
        by_session[rng.choice(["s1", "s2", "s2", "s3", "s3", "s3"])].append(t)
    for name, part in by_session.items():
        store(sessions, part, "fuzz", session_id=name)
    vocab = common + medium + rare
    for _ in range(20):
        pool = vocab[:38] if rng.random() < 0.5 else vocab
        query = " ".join(
            rng.choices(pool, k=rng.choice([1, 2, 3, 5, 8, 12])) + (["r999x"] if rng.random() < 0.2 else [])
        )
        for session in (None, "s1"):
            everything = reference(connection, "fuzz", query, session_id=session)
            for depth in (1, 10, 60):
                for floor in (0.0, FLOOR):
                    found = ranking(connection, "fuzz", query, depth, session_id=session, floor=floor)
                    assert len({memory_id for _, memory_id in found}) == len(found)
                    if everything:
                        assert_same(found, everything, depth, floor)
                    else:
                        assert found == []


@pytest.mark.parametrize("size", [SMALL + 50, 300])
def test_words_the_namespaced_index_must_quote_are_found(
    sessions: Callable[[], Session], connection: Connection, size: int
) -> None:
    """Revision 0017 keys each word by its namespace, in the index and in the query: words with quotes,
    backslashes and any script, in namespaces named with them, are found, in a large namespace (the pruned
    path) and a small one (one pass, through the index since revision 0018); a word over 2,000 bytes is not
    indexed: a large namespace does not search it, and a query holding one still finds the memory by its
    other words; a small namespace reads its memories for it and finds it."""
    long_word = "z" * 2010  # under PostgreSQL's 2,047-byte limit for a word, over memagent's 2,000
    hostile = [
        "o'brien's café naïve",
        "C:\\temp\\path and back\\slash",
        "ünïcödé 東京 ผลไม้ emoji 🦀 rustacean",
        "quote '' doubled 'single' \"double\"",
        "see http://ex.com/it's?x=1 and https://h.com/p'q and https://h.com/a\\b:c",  # words with ' and \
        f"pineapple {long_word}",
    ]
    filler = corpus(random.Random(5), size)
    for namespace in ("it's a \\ namespace", "plain"):
        store(sessions, filler + hostile, namespace)
        for text_ in hostile:
            found = ranking(connection, namespace, text_, 5)
            assert_same(found, reference(connection, namespace, text_), 5)
            best = connection.execute(text("SELECT content FROM memories WHERE id = :i"), {"i": found[0][1]})
            assert best.scalar_one() == text_
        alone = ranking(connection, namespace, long_word, 5)
        if size > SMALL:
            assert alone == []  # not searched: no error, nothing found
        else:
            assert_same(alone, reference(connection, namespace, long_word), 5)
            best = connection.execute(text("SELECT content FROM memories WHERE id = :i"), {"i": alone[0][1]})
            assert best.scalar_one() == f"pineapple {long_word}"


def test_a_query_of_many_long_words_is_ranked_without_an_oversized_tsquery(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Pass 2's term sets written out as one tsquery could pass PostgreSQL's 1 MB limit for a long query of
    long words; past 500 kB the ranking takes the rarest terms instead (revision 0016)."""
    long_words = [f"{chr(97 + i)}{'q' * 1980}{i:02d}" for i in range(24)]
    short = WORDS[:25]
    rare = [" ".join(long_words) + f" {WORDS[30 + i]}" for i in range(5)]
    filler = [" ".join(short) + f" memo{i}" for i in range(SMALL + 50)]
    store(sessions, rare + filler, "long-words")
    query = " ".join(long_words + short)
    everything = reference(connection, "long-words", query)
    for floor in (0.0, FLOOR):
        assert_same(ranking(connection, "long-words", query, 50, floor=floor), everything, 50, floor)


def test_a_small_namespace_is_ranked_in_one_pass(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    rng = random.Random(11)
    store(sessions, corpus(rng, 500), "small-ns")
    for _ in range(20):
        query = " ".join(rng.sample(WORDS, rng.randint(1, 8)))
        everything = reference(connection, "small-ns", query)
        for floor in (0.0, FLOOR):
            assert_same(ranking(connection, "small-ns", query, 10, floor=floor), everything, 10, floor)


def test_few_memories_of_a_kind_are_ranked_in_one_pass_by_their_kind(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Facts among more than SMALL exchanges (revision 0024): a facts-only ranking scores the facts holding
    a query word, in one pass read through the (namespace, kind) index — not the namespace's full-text
    index entries, which hold every exchange — with the namespace's statistics: the exact BM25 top."""
    rng = random.Random(23)
    store(sessions, corpus(rng, SMALL + 400), "mostly-exchanges")
    docs = memories_of(connection, "mostly-exchanges")
    facts = set(random.Random(24).sample(sorted(docs), 60))
    connection.execute(text("UPDATE memories SET kind = 'fact' WHERE id = ANY(:ids)"), {"ids": sorted(facts)})
    connection.execute(text("ANALYZE memories"))

    def full_text_index_scans() -> int:
        return int(
            connection.execute(
                text("SELECT pg_stat_get_xact_numscans(CAST('ix_memories_ns_lexemes' AS regclass))")
            ).scalar_one()
        )

    for _ in range(15):
        query = " ".join(rng.sample(WORDS, rng.randint(1, 8)))
        everything = [(s, i) for s, i in bm25(docs, query_terms(connection, query)) if i in facts]
        before = full_text_index_scans()
        for floor in (0.0, FLOOR):
            rows = connection.execute(
                text(
                    "SELECT id, score FROM memagent_text_ranking(:ns, NULL, NULL, :q, 10,"
                    " CAST(:kinds AS text[]), NULL, false, CAST(:floor AS float8))"
                ),
                {"ns": "mostly-exchanges", "q": query, "kinds": ["fact"], "floor": floor},
            ).all()
            found = [(float(row.score), int(row.id)) for row in rows]
            if everything:
                assert_same(found, everything, 10, floor)
            else:
                assert found == []
        assert full_text_index_scans() == before, query


def test_counting_a_kind_never_scans_the_table_however_often_it_runs(connection: Connection) -> None:
    """The count that chooses revision 0024's path is planned for its values on every call (revision 0025):
    PL/pgSQL's cached generic plan for it scanned the whole table from the sixth call of a session."""
    connection.execute(
        text(
            "INSERT INTO memories (namespace, session_id, content, embedding_model, content_hash, kind)"
            " SELECT 'many-facts', 's', 'memory ' || i || ' ' || (ARRAY['coffee', 'garden', 'piano'])"
            "[1 + i % 3], 'fake', md5(i::text), CASE WHEN i % 20 = 0 THEN 'fact' ELSE 'exchange' END"
            " FROM generate_series(1, 20000) i"
        )
    )  # 20,000 memories, 1,000 of them facts, left unvacuumed as after a bulk write
    connection.execute(text("ANALYZE memories"))

    def table_scans() -> int:
        return int(
            connection.execute(
                text("SELECT pg_stat_get_xact_numscans(CAST('memories' AS regclass))")
            ).scalar_one()
        )

    scans = []
    for call in range(12):
        before = table_scans()
        found = connection.execute(
            text(
                "SELECT * FROM memagent_text_ranking('many-facts', NULL, NULL, :q, 10, ARRAY['fact'],"
                " NULL, false, 0.35)"
            ),
            {"q": f"memory {20 * (call + 1)} piano"},
        ).all()
        assert found, call
        scans.append(table_scans() - before)
    assert scans == [0] * 12, scans


def test_scoped_ranking_keeps_namespace_statistics(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    rng = random.Random(7)
    texts = corpus(rng, 300)
    store(sessions, texts[:150], "scoped", session_id="a")
    store(sessions, texts[150:], "scoped", session_id="b")
    for _ in range(20):
        query = " ".join(rng.sample(WORDS, rng.randint(1, 5)))
        found = ranking(connection, "scoped", query, 10, session_id="a")
        assert_same(found, reference(connection, "scoped", query, session_id="a"), 10)


def statistics(conn: Connection, namespace: str) -> tuple[Any, dict[str, int]]:
    totals = conn.execute(
        text("SELECT docs, total_len FROM memory_text_stats WHERE namespace = :ns"), {"ns": namespace}
    ).one_or_none()
    terms = conn.execute(
        text("SELECT lexeme, df FROM memory_term_stats WHERE namespace = :ns"), {"ns": namespace}
    ).all()
    return (None if totals is None else tuple(totals)), {row.lexeme: int(row.df) for row in terms}


def recounted(conn: Connection, namespace: str) -> tuple[Any, dict[str, int]]:
    totals = conn.execute(
        text(
            "SELECT count(DISTINCT m.id), count(*)"
            " FROM memories m CROSS JOIN LATERAL unnest(m.content_tsv) u WHERE m.namespace = :ns"
        ),
        {"ns": namespace},
    ).one()
    terms = conn.execute(
        text(
            "SELECT u.lexeme, count(*) AS df FROM memories m CROSS JOIN LATERAL unnest(m.content_tsv) u"
            " WHERE m.namespace = :ns GROUP BY u.lexeme"
        ),
        {"ns": namespace},
    ).all()
    return (None if totals[0] == 0 else tuple(totals)), {row.lexeme: int(row.df) for row in terms}


def test_statistics_follow_every_write(sessions: Callable[[], Session], connection: Connection) -> None:
    rng = random.Random(3)
    store(sessions, corpus(rng, 120), "stats", session_id="keep")
    old = datetime.now(UTC) - timedelta(days=30)
    store(sessions, corpus(random.Random(4), 80), "stats", session_id="drop", at=old)
    assert statistics(connection, "stats") == recounted(connection, "stats")

    connection.execute(text("DELETE FROM memories WHERE namespace = 'stats' AND session_id = 'drop'"))
    assert statistics(connection, "stats") == recounted(connection, "stats")
    connection.execute(
        text("UPDATE memories SET content = content || ' zeppelin' WHERE namespace = 'stats' AND id % 3 = 0")
    )
    connection.execute(
        text("UPDATE memories SET namespace = 'moved' WHERE namespace = 'stats' AND id % 5 = 0")
    )
    assert statistics(connection, "stats") == recounted(connection, "stats")
    assert statistics(connection, "moved") == recounted(connection, "moved")
    # An update that touches neither content nor namespace (an embedding filled in) changes nothing.
    before = statistics(connection, "stats")
    connection.execute(text("UPDATE memories SET metadata = '{\"x\": 1}' WHERE namespace = 'stats'"))
    assert statistics(connection, "stats") == before

    connection.execute(text("DELETE FROM memories WHERE namespace IN ('stats', 'moved')"))
    assert statistics(connection, "stats") == (None, {})
    assert statistics(connection, "moved") == (None, {})


def test_statistics_are_isolated_by_namespace(service: MemoryService) -> None:
    service.remember("Zebulon keeps a secret aquarium", namespace="tenant-a")
    service.remember("Nothing to see here", namespace="tenant-b")
    if not service.unit.isolation().on:
        pytest.skip("isolation is off for this login")
    # memagent_app has no privilege on the statistics (the triggers write them as their owner)...
    with pytest.raises(DatabaseError, match="permission denied"), service.unit("tenant-b") as store_b:
        store_b.memories.session.execute(text("SELECT count(*) FROM memory_term_stats")).all()
    found = service.recall("Zebulon aquarium", namespace="tenant-b", mode="text")
    assert [m.content for m in found] == []
    # ...and the ranking function, which runs as their owner, checks the namespace itself.
    with pytest.raises(DatabaseError, match="may not read namespace"), service.unit("tenant-b") as store_b:
        store_b.memories.session.execute(
            text("SELECT * FROM " + RANKING.format("'tenant-a', NULL, NULL, 'zebulon', 10"))
        ).all()
    with service.unit("tenant-a") as store_a:
        ranked = store_a.memories.session.execute(
            text("SELECT * FROM " + RANKING.format("'tenant-a', NULL, NULL, 'zebulon', 10"))
        ).all()
        assert len(ranked) == 1


def test_a_memory_is_found_by_text_the_moment_it_is_stored(service: MemoryService) -> None:
    for i in range(30):
        service.remember(f"weekly note {i} about the garden and the kitchen", namespace="fresh")
    service.remember("Priya is building a Rust compiler for embedded targets", namespace="fresh")
    found = service.recall("Rust compiler", namespace="fresh", mode="text", k=3)
    assert found and found[0].content == "Priya is building a Rust compiler for embedded targets"


def test_only_memagent_app_may_rank_and_only_its_namespace(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """The ranking runs as its owner: a role without memagent's privileges may not call it, and
    memagent_app may not call it without the namespace its transaction is confined to."""
    store(sessions, ["a secret about the aquarium"], "private")
    connection.execute(text("CREATE ROLE memagent_test_snoop NOLOGIN"))
    attempts = [
        ("memagent_test_snoop", None, "permission denied"),
        ("memagent_app", None, "may not read namespace"),
        ("memagent_app", "someone-else", "may not read namespace"),
    ]
    for role, namespace, refusal in attempts:
        with pytest.raises(sqlalchemy.exc.DBAPIError, match=refusal), connection.begin_nested():
            connection.execute(text(f"SET LOCAL ROLE {role}"))
            if namespace is not None:
                connection.execute(
                    text("SELECT set_config('memagent.namespace', :ns, true)"), {"ns": namespace}
                )
            connection.execute(
                text("SELECT * FROM " + RANKING.format("'private', NULL, NULL, 'aquarium', 5"))
            )
    with connection.begin_nested() as allowed:
        connection.execute(text("SET LOCAL ROLE memagent_app"))
        connection.execute(text("SELECT set_config('memagent.namespace', 'private', true)"))
        found = connection.execute(
            text("SELECT * FROM " + RANKING.format("'private', NULL, NULL, 'aquarium', 5"))
        ).all()
        allowed.rollback()
    assert len(found) == 1


def test_concurrent_writers_of_one_namespace_under_a_stricter_default(
    embedded: EmbeddedPostgres, fake: FakeOpenAI
) -> None:
    """Writers of one namespace share its statistics rows: a database defaulting to REPEATABLE READ must not
    turn their meeting into serialization errors (memagent's transactions run at READ COMMITTED)."""
    url = make_database(embedded, "memagent_repeatable_read")
    admin = create_engine(embedded.url(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(
                "ALTER DATABASE memagent_repeatable_read"
                " SET default_transaction_isolation = 'repeatable read'"
            )
        )
    admin.dispose()
    with Database(Settings(), url=url) as db:
        schema.upgrade(db, "head", embedding_dim=DIM)
    failures: list[BaseException] = []
    with Memory(
        database_url=url, namespace="shared", recall_mode="text", embedder=fake_embedder(fake)
    ) as memory:

        def write(worker: int) -> None:
            for i in range(20):
                try:
                    memory.remember(f"writer {worker} note {i} about the shared garden")
                except BaseException as exc:
                    failures.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert memory.count() == 60
        assert len(memory.recall("shared garden note", k=60)) == 60
