"""Revision 0021 (memagent.store.text_tiers), attacked: repeated words (tf 2-5), very short and very long
memories, many query terms, stale statistics; the ranking must stay the exact BM25 top.

The fuzz runs the production function and, to show which of pass 2's paths it reached, a copy of it with
RAISE NOTICE lines only (installed in the test's rolled-back transaction, psycopg2's notices read back).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.store import text_tiers
from memagent.store.text_ranking import SMALL
from tests.test_text_ranking import assert_same, bm25, memories_of, query_terms, ranking, store

Docs = dict[int, tuple[str, dict[str, int]]]

COMMON = [f"c{i}x" for i in range(8)]
MEDIUM = [f"m{i}x" for i in range(30)]
RARE = [f"r{i}x" for i in range(120)]
VOCAB = COMMON + MEDIUM + RARE


def repeated_corpus(rng: random.Random, count: int) -> list[str]:
    """Memories of every shape pass 2's two bounds tell apart: one or two words (the shortest memory of a
    word), repeated words, ordinary ones, and long ones of distinct filler words (dl 40-150)."""
    texts: set[str] = set()
    while len(texts) < count:
        shape = rng.random()
        if shape < 0.15:  # very short, a word said 1-5 times, maybe a second word
            words = [rng.choice(VOCAB)] * rng.randint(1, 5)
            if rng.random() < 0.5:
                words += [rng.choice(COMMON + MEDIUM)] * rng.randint(1, 2)
        elif shape < 0.3:  # long: many distinct fillers, a few query words, some repeated
            words = [f"f{rng.randrange(6000)}z" for _ in range(rng.randint(40, 150))]
            words += rng.choices(COMMON, k=rng.randint(0, 4)) + rng.choices(MEDIUM, k=rng.randint(0, 3))
            if rng.random() < 0.3:
                words += [rng.choice(RARE)] * rng.randint(1, 5)
        else:
            words = rng.choices(COMMON, k=rng.randint(0, 4)) + rng.choices(MEDIUM, k=rng.randint(0, 3))
            words += rng.choices(RARE, k=rng.randint(1, 2)) if rng.random() < 0.3 else []
            for word in sorted(set(words)):
                if rng.random() < 0.3:
                    words += [word] * rng.randint(1, 4)
            words += [f"u{len(texts)}q"] * rng.randint(0, 2)
        if words:
            rng.shuffle(words)
            texts.add(" ".join(words))
    return sorted(texts)


def reference(conn: Connection, docs: Docs, query: str, session_id: str | None) -> list[tuple[float, int]]:
    """tests/test_text_ranking.py's reference, over memories loaded once."""
    return bm25(docs, query_terms(conn, query), session_id)


def queries(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        pool = VOCAB[:38] if rng.random() < 0.5 else VOCAB
        k = rng.choice([1, 2, 3, 5, 8, 12, 20, 30])
        words = rng.choices(pool, k=k) + (["r999x"] if rng.random() < 0.1 else [])
        out.append(" ".join(words))
    return out


# Every matching memory's score in the ranking's own arithmetic (the scoring statement's expression, summed
# in lexeme order, over the namespace's statistics), best first, ties by id: what the ranking must return
# bit for bit.
BITWISE = """
WITH s AS (SELECT docs::float8 AS n, greatest(total_len::float8 / greatest(docs, 1), 1.0) AS avgdl
           FROM memory_text_stats WHERE namespace = :ns),
     q AS MATERIALIZED (  -- once: inlined, stale statistics put it inside a loop over the memories
           SELECT array_agg(t.lexeme) AS lex, array_agg(ln(1 + (s.n - t.df + 0.5) / (t.df + 0.5))) AS idf
           FROM memory_term_stats t, s
           WHERE t.namespace = :ns AND t.df > 0 AND octet_length(t.lexeme) <= 2000
               AND t.lexeme IN (SELECT lexeme FROM unnest(to_tsvector('english', :q))))
SELECT * FROM (
    SELECT m.id, (
        SELECT sum(q.idf[array_position(q.lex, u.lexeme)]
                   * u.tf * 2.2 / (u.tf + 1.2 * (1 - 0.75 + 0.75 * length(m.content_tsv) / s.avgdl)))
        FROM (SELECT t.lexeme, coalesce(array_length(t.positions, 1), 1)::float8 AS tf
              FROM unnest(ts_filter(setweight(m.content_tsv, 'A', q.lex), '{a}')) t) u
    ) AS score
    FROM memories m, q, s
    WHERE m.namespace = :ns AND (CAST(:session AS text) IS NULL OR m.session_id = :session)
) x WHERE x.score IS NOT NULL
ORDER BY x.score DESC, x.id
"""


def bitwise(conn: Connection, namespace: str, query: str, session: str | None) -> list[tuple[float, int]]:
    rows = conn.execute(text(BITWISE), {"ns": namespace, "q": query, "session": session}).all()
    return [(float(r.score), int(r.id)) for r in rows]


def check(conn: Connection, namespace: str, docs: Docs, qs: list[str], exact: bool = False) -> int:
    """The reference's top (scores to 9 decimals); with `exact`, the very ids and bits of the ranking's own
    arithmetic too (ties and last-bit differences at theta included)."""
    checked = 0
    for query in qs:
        for session in (None, "s1"):
            everything = reference(conn, docs, query, session)
            bits = bitwise(conn, namespace, query, session) if exact else []
            for depth in (1, 10, 60):
                for floor in (0.0, 0.2):
                    found = ranking(conn, namespace, query, depth, session_id=session, floor=floor)
                    assert len({memory_id for _, memory_id in found}) == len(found), (query, depth, floor)
                    if everything:
                        try:
                            assert_same(found, everything, depth, floor)
                        except AssertionError as exc:
                            raise AssertionError(
                                f"{query!r} session={session} depth={depth} floor={floor}"
                            ) from exc
                    else:
                        assert found == []
                    if exact and bits:
                        want = [x for x in bits if x[0] >= floor * bits[0][0]][:depth]
                        assert found == want, (query, session, depth, floor, found[-3:], want[-3:])
                    checked += 1
    return checked


def split_store(
    sessions: Callable[[], Session], rng: random.Random, texts: list[str], namespace: str
) -> None:
    parts: dict[str, list[str]] = {"s1": [], "s2": [], "s3": []}
    for t in texts:
        parts[rng.choice(["s1", "s2", "s2", "s3", "s3", "s3"])].append(t)
    for name, part in parts.items():
        store(sessions, part, namespace, session_id=name)


# The production function with notices of pass 2's path (nothing else changed).
_PROBES = (
    (
        "        sets := coalesce(array_length(q_sets, 1), 0);\n",
        "        sets := coalesce(array_length(q_sets, 1), 0);\n"
        "        RAISE NOTICE 'probe sets tiered=% explored=% sets=% plus=%', tiered, explored, sets,"
        " (SELECT count(*) FROM unnest(q_sets) z WHERE z::text LIKE '%+%');\n",
    ),
    (
        "        q_sets := ARRAY[memagent_ns_query(",
        "        RAISE NOTICE 'probe anyof';\n        q_sets := ARRAY[memagent_ns_query(",
    ),
)


def probed() -> str:
    sql = text_tiers.function()
    for old, new in _PROBES:
        assert sql.count(old) == 1
        sql = sql.replace(old, new)
    return sql


class Kept:
    """psycopg2's notices, all kept (it trims a list to 50; SQLAlchemy empties a non-empty one)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def append(self, notice: str) -> None:
        self.items.append(notice)

    def __bool__(self) -> bool:
        return False


def paths(notices: list[str]) -> Counter[str]:
    seen: Counter[str] = Counter()
    for notice in notices:
        found = re.search(r"probe sets tiered=(\w+) explored=(\d+) sets=(\d+) plus=(\d+)", notice)
        if found:
            tiered, _, sets, plus = found.groups()
            seen[f"tiered={tiered}"] += 1
            seen["plus-sets"] += int(plus) > 0
            seen["no-set"] += int(sets) == 0
        elif "probe anyof" in notice:
            seen["anyof"] += 1
    return seen


@pytest.mark.parametrize("seed", [1, 2])
def test_repeated_words_short_and_long_memories_are_ranked_exactly(
    sessions: Callable[[], Session], connection: Connection, seed: int
) -> None:
    rng = random.Random(seed)
    split_store(sessions, rng, repeated_corpus(rng, SMALL + 300), "tiers")
    docs = memories_of(connection, "tiers")
    qs = queries(rng, 30)
    check(connection, "tiers", docs, qs, exact=True)
    # The same queries through the probed copy: the paths of pass 2 the fuzz reached.
    connection.execute(text(probed()))
    notices = Kept()
    connection.connection.dbapi_connection.notices = notices  # type: ignore[union-attr]
    check(connection, "tiers", docs, qs)
    seen = paths(notices.items)
    print(f"seed {seed}: {dict(seen)}")
    assert seen["plus-sets"] > 0 and seen["tiered=t"] > 0


def test_stale_statistics_keep_the_ranking_exact(
    sessions: Callable[[], Session], connection: Connection
) -> None:
    """Deleting the shortest memories and the ones repeating words most, and rewriting others, leaves
    min_dl lower and max_tf higher than any memory now has: looser bounds, the same exact top."""
    rng = random.Random(7)
    split_store(sessions, rng, repeated_corpus(rng, SMALL + 1500), "stale")
    connection.execute(
        text(
            "DELETE FROM memories m WHERE m.namespace = 'stale' AND (length(m.content_tsv) = 1"
            " OR EXISTS (SELECT 1 FROM unnest(m.content_tsv) u WHERE array_length(u.positions, 1) >= 5))"
        )
    )
    connection.execute(
        text("UPDATE memories SET content = content || ' c1x m2x' WHERE namespace = 'stale' AND id % 7 = 0")
    )
    docs = memories_of(connection, "stale")
    assert len(docs) > SMALL
    check(connection, "stale", docs, queries(rng, 25), exact=True)


def test_the_index_keys_exactly_the_words_held_more_than_once(connection: Connection) -> None:
    """'+' for tf > 1 (as the scoring counts it), '/' for all; none for a word over LONGEST bytes."""
    got = connection.execute(
        text(
            "SELECT tsvector_to_array(memagent_ns_lexemes('n', to_tsvector('english',"
            " 'apple apple pear plum plum plum ' || repeat('z', 2010) || ' ' || repeat('z', 2010))))"
        )
    ).scalar_one()
    key = connection.execute(
        text("SELECT left(encode(sha256(convert_to('n', 'UTF8')), 'hex'), 8)")
    ).scalar_one()
    assert sorted(got) == sorted([f"{key}/appl", f"{key}+appl", f"{key}/pear", f"{key}/plum", f"{key}+plum"])
    # A lexeme without positions (a stripped tsvector) counts once, as the scoring's coalesce does.
    stripped = connection.execute(
        text("SELECT tsvector_to_array(memagent_ns_lexemes('n', strip(to_tsvector('english', 'a b b b'))))")
    ).scalar_one()
    assert all("+" not in k for k in stripped)


def test_quoted_words_repeated_in_pass_2(sessions: Callable[[], Session], connection: Connection) -> None:
    """Pass 2 writes its keys itself (memagent_any_lexeme of `key/word`, `key+word`): words holding a quote
    (a URL's lexemes), common and repeated, are found by both keys."""
    rng = random.Random(17)
    urls = [f"h{i}.com/it's" for i in range(6)] + [f"h{i}.org/o'k" for i in range(6)]
    texts: set[str] = set()
    while len(texts) < SMALL + 300:
        words = rng.choices(urls, k=rng.randint(0, 3)) + rng.choices(MEDIUM, k=rng.randint(0, 3))
        for word in sorted(set(words)):
            if rng.random() < 0.3:
                words += [word] * rng.randint(1, 3)
        words += [f"u{len(texts)}q"] * rng.randint(1, 2)  # (no empty memory: the reference skips it)
        rng.shuffle(words)
        texts.add(" ".join(words))
    split_store(sessions, rng, sorted(texts), "quoted")
    docs = memories_of(connection, "quoted")
    qs = [" ".join(rng.choices(urls + MEDIUM[:10], k=rng.choice([2, 4, 8, 12]))) for _ in range(15)]
    connection.execute(text(probed()))
    notices = Kept()
    connection.connection.dbapi_connection.notices = notices  # type: ignore[union-attr]
    check(connection, "quoted", docs, qs, exact=True)
    seen = paths(notices.items)
    assert seen["plus-sets"] > 0, seen
