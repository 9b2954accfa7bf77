"""Pass 2 compares bounds summed in term order (rarest first) with theta, a score summed in lexeme order.
When a memory's bounds are tight (it is the shortest memory holding each of its words, and holds each once:
revision 0021's ub1 makes that the common case), a memory scoring exactly theta could be left unread because
its bounds, summed in the other order, fall one unit of the last bit short (an outside review's cases,
kept; they failed on 0021's first version, the last one on 0020 too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from tests.test_text_ranking import ranking, store

# Exact scores (the ranking's own arithmetic: the same expression summed in lexeme order), best first.
EXACT = """
WITH s AS (SELECT docs::float8 AS n, greatest(total_len::float8 / greatest(docs, 1), 1.0) AS avgdl
           FROM memory_text_stats WHERE namespace = :ns),
     q AS MATERIALIZED (  -- once: inlined, stale statistics put it inside a loop over the memories
           SELECT array_agg(t.lexeme) AS lex, array_agg(ln(1 + (s.n - t.df + 0.5) / (t.df + 0.5))) AS idf
           FROM memory_term_stats t, s
           WHERE t.namespace = :ns AND t.lexeme IN (SELECT lexeme FROM unnest(to_tsvector('english', :q))))
SELECT m.id, (
    SELECT sum(q.idf[array_position(q.lex, u.lexeme)]
               * u.tf * 2.2 / (u.tf + 1.2 * (1 - 0.75 + 0.75 * length(m.content_tsv) / s.avgdl)))
    FROM (SELECT t.lexeme, coalesce(array_length(t.positions, 1), 1)::float8 AS tf
          FROM unnest(ts_filter(setweight(m.content_tsv, 'A', q.lex), '{a}')) t) u
) AS score
FROM memories m, q, s WHERE m.namespace = :ns AND m.content_tsv @@ to_tsquery('english', :any)
ORDER BY score DESC, m.id LIMIT :depth
"""

NS = "one-ulp"


def build(
    sessions: Callable[[], Session],
    df_b: int = 160,
    df_c: int = 187,
    n: int = 2200,
    rare: str = "ddrx",
    twice: bool = True,
) -> None:
    """M = "bbx ccx ddsx", then Y = "bbx ccx <rare>": pass 1 scores the holders of `rare` (150 of them, Y
    the best); `ddsx` has the same statistics (so the same weight), its lexeme after `rare`'s; "bbx" and
    "ccx" are held by df_b and df_c memories; M and Y are the shortest memories holding their words."""
    texts = ["bbx ccx ddsx", f"bbx ccx {rare}"]  # M (stored first: the smaller id), then Y
    for word, tag in ((rare, "r"), ("ddsx", "s")):  # 150 holders each; one holds the word twice
        texts += [f"{word} {tag}{i}a {tag}{i}b {tag}{i}c {tag}{i}d" for i in range(148)]
        texts += [f"{word} {word if twice else ''} {tag}tf2a {tag}tf2b {tag}tf2c {tag}tf2d"]
    texts += [f"bbx b{i}a b{i}b b{i}c b{i}d" for i in range(df_b - 2)]
    texts += [f"ccx c{i}a c{i}b c{i}c c{i}d" for i in range(df_c - 2)]
    texts += [f"f{i}a f{i}b f{i}c" for i in range(n - len(texts))]
    store(sessions, texts[:1], NS)  # M's id smaller than Y's
    store(sessions, texts[1:2], NS)
    store(sessions, texts[2:], NS)


def exact(conn: Connection, query: str, depth: int) -> list[tuple[float, int]]:
    rows = conn.execute(
        text(EXACT), {"ns": NS, "q": query, "any": query.replace(" ", " | "), "depth": depth}
    ).all()
    return [(float(r.score), int(r.id)) for r in rows]


@pytest.mark.parametrize(
    ("build_args", "query", "tie"),
    [
        ({}, "ddrx ddsx bbx ccx", True),  # M and Y score the same: M, of the smaller id, first
        ({"df_b": 324, "df_c": 161, "n": 2300, "rare": "aarx"}, "aarx ddsx bbx ccx", False),  # one bit above
        ({"df_b": 324, "df_c": 161, "n": 2300, "rare": "aarx", "twice": False}, "aarx ddsx bbx ccx", False),
    ],
)
def test_a_memory_at_theta_by_the_last_bit_is_read(
    sessions: Callable[[], Session], connection: Connection, build_args: dict[str, Any], query: str, tie: bool
) -> None:
    """The best memory M scores theta (a tie with Y, which pass 1 found, M of the smaller id), or one unit of
    the last bit above it; its bounds, summed rarest first, fall one unit short. Revision 0021's first
    version (and, in the last case, 0020) returned Y; theta is now lowered by a relative 1e-12."""
    build(sessions, **build_args)
    m_id, y_id = (
        connection.execute(
            text("SELECT id FROM memories WHERE namespace = :ns AND content IN (:m, :y) ORDER BY id"),
            {"ns": NS, "m": "bbx ccx ddsx", "y": f"bbx ccx {query.split()[0]}"},
        )
        .scalars()
        .all()
    )
    best = exact(connection, query, 2)
    assert [i for _, i in best] == [m_id, y_id]
    assert (best[0][0] == best[1][0]) if tie else (best[0][0] > best[1][0])
    assert ranking(connection, NS, query, 1, floor=0.0) == best[:1]
    assert ranking(connection, NS, query, 2, floor=0.0) == best
