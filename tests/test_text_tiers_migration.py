"""Revision 0021's migration, both ways: the index's entries follow its function (old memories after the
REINDEX, a memory stored afterwards at once), owner, grants and pinned paths stay, and the ranking stays
exact at 0020 and 0021 over the same memories."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.config import Settings
from memagent.store import schema, text_tiers
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.memories import MemoryRepository, NewMemory
from memagent.store.text_ranking import SMALL
from tests.conftest import DIM, make_database
from tests.fake_openai import fake_embedding
from tests.test_text_ranking import assert_same, ranking, reference
from tests.test_text_tiers import queries, repeated_corpus

FUNCTIONS = (
    "memagent_ns_lexemes(text, tsvector)",
    "memagent_ns_query(text, tsquery)",
    "memagent_text_ranking(text, text, timestamp with time zone, text, integer, text[],"
    " timestamp with time zone, boolean, double precision)",
)


def catalog(conn: Connection) -> list[Any]:
    return [
        tuple(
            conn.execute(
                text(
                    "SELECT pg_get_userbyid(proowner), proacl::text, proconfig::text, provolatile,"
                    " proparallel, prosecdef FROM pg_proc WHERE oid = CAST(:f AS regprocedure)"
                ),
                {"f": f},
            ).one()
        )
        for f in FUNCTIONS
    ]


def ranking_both_ways(
    embedded: EmbeddedPostgres, database: str, earlier: tuple[str, str], later: tuple[str, str]
) -> None:
    """earlier → later → earlier → head, each a (revision, its ranking's CREATE statement): the function's
    body is each revision's, its owner, grants, pinned path and security the same throughout, and really the
    pin, the definer's security and memagent_app's grant, PUBLIC none (outside reviews' checks)."""
    source = "SELECT prosrc FROM pg_proc WHERE oid = CAST(:f AS regprocedure)"

    def body(sql: str) -> str:
        return sql.split("$fn$")[1]

    url = make_database(embedded, database)
    with Database(Settings(), url=url) as db:

        def installed() -> tuple[list[Any], str, str]:
            with db.engine.connect() as conn:
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                return catalog(conn), conn.execute(text(source), {"f": FUNCTIONS[2]}).scalar_one(), version

        schema.upgrade(db, earlier[0], embedding_dim=DIM)
        at_earlier = installed()
        _, acl, config, volatile, _, secdef = at_earlier[0][2]
        assert config is not None and "search_path=" in config and "pg_temp" in config, config
        assert secdef is True and volatile == "s"
        assert "memagent_app=X/" in acl and not acl.startswith("{=X") and ",=X/" not in acl, acl
        assert at_earlier[1:] == (body(earlier[1]), earlier[0])
        schema.upgrade(db, later[0])
        assert installed() == (at_earlier[0], body(later[1]), later[0])
        schema.downgrade(db, earlier[0])
        assert installed() == at_earlier
        schema.upgrade(db, "head")
        assert installed()[0] == at_earlier[0]


def keyed(conn: Connection, namespace: str, key: str) -> int:
    """How many memories the index itself lists under `key` (a bitmap scan: no recheck of a plain lexeme)."""
    conn.execute(text("SET enable_seqscan = off"))
    try:
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT count(*) FROM memories WHERE memagent_ns_lexemes(namespace, content_tsv)"
                    " @@ CAST(:q AS tsquery)"
                ),
                {"q": f"'{key}'"},
            ).scalars()
        )
        assert "ix_memories_ns_lexemes" in plan
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM memories WHERE memagent_ns_lexemes(namespace, content_tsv)"
                    " @@ CAST(:q AS tsquery)"
                ),
                {"q": f"'{key}'"},
            ).scalar_one()
        )
    finally:
        conn.execute(text("RESET enable_seqscan"))


def test_upgrade_and_downgrade_between_0020_and_0021(embedded: EmbeddedPostgres) -> None:
    url = make_database(embedded, "memagent_tiers_review")
    rng = random.Random(21)
    texts = repeated_corpus(rng, SMALL + 200)
    qs = queries(rng, 12)
    with Database(Settings(), url=url) as db:
        schema.upgrade(db, "0020", embedding_dim=DIM)
        with db.engine.connect() as conn:
            at_0020 = catalog(conn)
        with Session(db.engine) as session:
            MemoryRepository(session).add_many(
                [NewMemory("mig", "s", t, fake_embedding(t, DIM), "fake", {}) for t in texts]
            )
            session.commit()
        with db.engine.connect() as conn:
            key = conn.execute(
                text("SELECT left(encode(sha256(convert_to('mig', 'UTF8')), 'hex'), 8)")
            ).scalar_one()
            twice = conn.execute(
                text(
                    "SELECT count(*) FROM memories m, unnest(m.content_tsv) u"
                    " WHERE m.namespace = 'mig' AND u.lexeme = 'c1x' AND array_length(u.positions, 1) > 1"
                )
            ).scalar_one()
            held = conn.execute(
                text("SELECT count(*) FROM memories WHERE namespace = 'mig' AND content_tsv @@ 'c1x'")
            ).scalar_one()
            assert 0 < twice < held
            assert keyed(conn, "mig", f"{key}+c1x") == 0
            assert keyed(conn, "mig", f"{key}/c1x") == held

        schema.upgrade(db, "0021")
        with db.engine.connect() as conn:
            assert catalog(conn) == at_0020  # CREATE OR REPLACE and the pin: the same owner, grants, paths
            assert keyed(conn, "mig", f"{key}+c1x") == twice  # the REINDEX keyed the old memories
            assert keyed(conn, "mig", f"{key}/c1x") == held
        with Session(db.engine) as session:  # a memory stored after the upgrade
            MemoryRepository(session).add_many(
                [NewMemory("mig", "s", "c1x c1x zq9x zq9x zq9x", fake_embedding("n", DIM), "fake", {})]
            )
            session.commit()
        with db.engine.connect() as conn:
            assert keyed(conn, "mig", f"{key}+c1x") == twice + 1
            assert keyed(conn, "mig", f"{key}+zq9x") == 1
            for query in qs:
                everything = reference(conn, "mig", query)
                for depth in (1, 10, 60):
                    for floor in (0.0, 0.2):
                        assert_same(ranking(conn, "mig", query, depth, floor=floor), everything, depth, floor)

        schema.downgrade(db, "0020")
        with db.engine.connect() as conn:
            assert catalog(conn) == at_0020
            assert keyed(conn, "mig", f"{key}+c1x") == 0  # no entry left of the '+' keys
            assert keyed(conn, "mig", f"{key}/c1x") == held + 1
            assert (
                "ub1"
                not in conn.execute(
                    text("SELECT prosrc FROM pg_proc WHERE oid = CAST(:f AS regprocedure)"),
                    {"f": FUNCTIONS[2]},
                ).scalar_one()
            )
            for query in qs:
                everything = reference(conn, "mig", query)
                for depth in (1, 10):
                    assert_same(ranking(conn, "mig", query, depth, floor=0.0), everything, depth, 0.0)
        schema.upgrade(db, "head")
        with db.engine.connect() as conn:
            assert keyed(conn, "mig", f"{key}+c1x") == twice + 1
            # keyed() reads the index's entries, not the function: replaced without a REINDEX, the stale
            # entries are still listed (so the zero after the downgrade above is the REINDEX's doing).
            conn.execute(text(text_tiers.NS_LEXEMES_PLAIN))
            assert keyed(conn, "mig", f"{key}+c1x") == twice + 1
            conn.rollback()
