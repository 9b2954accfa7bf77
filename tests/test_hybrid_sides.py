"""Hybrid recall with its two sides at the same time: the text side on a connection of its own, started before
the query is embedded, the vector side on the caller's, then their fusion (memagent.usecases.checked)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text

from memagent.store.database import Database
from memagent.store.memories import NewMemory
from memagent.store.roles import APP_ROLE
from memagent.store.scope import Scope
from memagent.store.search import RecallStatement, recall_statement, run_in, settings_sql, settings_values
from memagent.usecases.service import MemoryService
from tests.conftest import DIM, prepared_statements
from tests.fake_openai import fake_embedding

WORDS = ("ferry", "porto", "pier", "harbour", "timetable", "garden", "orchid", "water", "sunday", "tide")


def fill(service: MemoryService, db: Database, namespace: str) -> datetime:
    """Exchanges in two sessions, facts and a summary drawn from some of them, archived exchanges and an
    expired fact: every kind of row the final step treats apart. Returns a time before the archiving and the
    expiry (what memagent believed then: all of them current)."""

    def new(content: str, session: str, kind: str = "exchange") -> NewMemory:
        return NewMemory(
            namespace, session, content, fake_embedding(content, DIM), service.embedder.model, {}, kind=kind
        )

    service.remember("the first memory claims the embedding space")
    with service.unit(namespace) as store:
        exchanges = []
        for i in range(30):
            words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(2 + i % 4)]
            said = f"User: about the {' and the '.join(words)} ({i})\nAssistant: noted, {words[0]} it is"
            exchanges.append(store.memories.add(new(said, f"s{i % 2}"))[0])
        facts = []
        for i in range(0, 30, 4):
            fact = store.memories.add(new(f"the {WORDS[i % len(WORDS)]} matters ({i})", "s0", "fact"))[0]
            facts.append(fact)
            store.memories.link(namespace, [(fact, [exchanges[i], exchanges[(i + 5) % 30]])])
        summary = store.memories.add(new("a summary of the ferry, the pier and the tide", "s1", "summary"))[0]
        store.memories.link(namespace, [(summary, exchanges[10:20])])
    time.sleep(0.01)
    before = datetime.now(UTC)
    time.sleep(0.01)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE memories SET archived_at = now() WHERE id = ANY (:ids)"), {"ids": exchanges[10:16]}
        )
        conn.execute(text("UPDATE memories SET expired_at = now() WHERE id = :id"), {"id": facts[1]})
    return before


def recalled(service: MemoryService, query: str, **kw: Any) -> list[tuple[int, float, float | None]]:
    found = service.recall(query, mode="hybrid", **kw)
    return [(m.id, m.score, m.distance) for m in found.memories]


def test_the_sides_at_once_return_what_one_statement_returns(
    engine_service: tuple[MemoryService, Database, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of running the sides at once — the text side done before the vector side starts (two
    statements), or not yet (three) — give the rows one statement gives, in every shape of recall."""
    service, db, namespace = engine_service
    then = fill(service, db, namespace)
    ran: list[tuple[str, str]] = []
    run, run_aside = service.unit.run, service.unit.run_aside

    vector_side_ran = threading.Event()
    text_sides: list[Future[list[Any]]] = []

    def recording(ns: str, sql: str, params: Any, settings: Any = (), **kw: Any) -> list[Any]:
        ran.append((threading.current_thread().name, sql))
        if kw.get("prepare"):  # the fusion: from one kept plan, whatever PostgreSQL would choose
            settings = (*settings, ("plan_cache_mode", "force_generic_plan"))
        rows = run(ns, sql, params, settings, **kw)
        if sql.endswith("AS snapshot FROM nearest"):  # the vector side alone
            vector_side_ran.set()
        return rows

    def late(*args: Any) -> Future[list[Any]] | None:
        """The text side, its result handed over once the vector side has run: not done before it."""
        inner = run_aside(*args)
        if inner is None:
            return None
        handed: Future[list[Any]] = Future()

        def hand_over() -> None:
            rows = inner.result()
            assert vector_side_ran.wait(30)
            handed.set_result(rows)

        threading.Thread(target=hand_over).start()
        return handed

    def kept(*args: Any) -> Future[list[Any]] | None:
        inner = run_aside(*args)
        if inner is not None:
            text_sides.append(inner)
        return inner

    monkeypatch.setattr(service.unit, "run", recording)
    # The text side done when the query is embedded: the embedder waits for it.
    slow = SlowEmbedder(service.embedder, 0.0, before=lambda: text_sides[-1].result(timeout=30))
    queries = ["ferry porto", "the tide at noon", "orchid water sunday", "lighthouse", "garden harbour pier"]
    shapes = itertools.product(
        queries,
        (1, 7),
        (None, 0.9),  # a maximum distance
        (None, "s1"),  # one session
        (None, ("fact",), ("exchange", "summary")),
        ((False, None), (True, None), (False, then)),  # archived ones too; what it believed then
        (None, 0.0),  # the text side's floor: hybrid's, or none (item search)
    )
    compared = 0
    for i, (query, k, cut, session, kinds, (archived, as_of), floor) in enumerate(shapes):
        kw = {"k": k, "max_distance": cut, "session_id": session, "kinds": kinds, "as_of": as_of}
        kw |= {"include_archived": archived, "text_floor": floor}
        with monkeypatch.context() as one:
            one.setattr(service.unit, "run_aside", lambda *a, **kw: None)
            ran.clear()
            alone = recalled(service, query, **kw)
            assert len(ran) == 1 and "memagent_text_ranking" in ran[0][1] and "vec_ids" not in ran[0][1]
        with monkeypatch.context() as timing:
            if i % 2:
                timing.setattr(service, "embedder", slow)
                timing.setattr(service.unit, "run_aside", kept)
            else:
                timing.setattr(service.unit, "run_aside", late)
            ran.clear()
            vector_side_ran.clear()
            assert recalled(service, query, **kw) == alone, (query, kw)
        # The text side ran on a recall thread; the vector side and the fusion on this one, as one
        # statement when the text side was done, else as two.
        aside = [sql for name, sql in ran if name.startswith("memagent-recall")]
        here = [sql for name, sql in ran if not name.startswith("memagent-recall")]
        assert len(aside) == 1 and "memagent_text_ranking" in aside[0], (query, kw)
        assert "memagent_text_ranking" not in "".join(here)
        if i % 2:
            assert len(here) == 1 and "nearest_index" in here[0] and "txt_ids" in here[0], (query, kw)
        else:
            assert len(here) == 2 and "nearest_index" in here[0] and "vec_ids" in here[1], (query, kw)
        compared += bool(alone)
    assert compared > 300  # most of the 360 shapes find something
    # The fusion (the third statement) went as a prepared statement, run from its kept plan (forced above).
    prepared = prepared_statements(db)
    assert prepared and all("query_vector AS MATERIALIZED (SELECT CAST($" in row[2] for row in prepared)
    assert all(generic and not custom for *_, generic, custom in prepared), prepared
    # With the text side done first, the vector side and the fusion went as one prepared statement too, its
    # namespace written in as for the vector side alone (in the shapes that rank a whole namespace).
    with_text = [row[2].split("EXECUTE")[0] for row in prepared if "txt AS MATERIALIZED" in row[2]]
    with_text = [sql for sql in with_text if "nearest_index" in sql]
    assert with_text and all(f"'{namespace}'" in sql for sql in with_text)


class SlowEmbedder:
    """The service's embedder, taking `delay` seconds per call (and calling `before` first, if given),
    recording when each call started."""

    def __init__(self, inner: Any, delay: float, before: Callable[[], Any] | None = None) -> None:
        self.inner, self.delay, self.before = inner, delay, before
        self.started: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: Sequence[str]) -> Any:
        self.started.append(time.perf_counter())
        if self.before is not None:
            self.before()
        time.sleep(self.delay)
        return self.inner.embed(texts)


def test_the_text_side_runs_while_the_query_is_embedded(
    engine_service: tuple[MemoryService, Database, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, db, namespace = engine_service
    fill(service, db, namespace)
    service.recall("warm the space check up")
    slow = SlowEmbedder(service.embedder, 0.3)
    monkeypatch.setattr(service, "embedder", slow)
    text_ran: list[tuple[float, float]] = []
    run = service.unit.run

    def timed(ns: str, sql: str, params: Any, settings: Any = (), **kw: Any) -> list[Any]:
        started = time.perf_counter()
        try:
            return run(ns, sql, params, settings, **kw)
        finally:
            if "memagent_text_ranking" in sql:
                text_ran.append((started, time.perf_counter()))

    monkeypatch.setattr(service.unit, "run", timed)
    assert recalled(service, "ferry porto pier")
    (embedding_started,) = slow.started
    ((text_started, text_done),) = text_ran
    assert text_started < embedding_started + 0.3 and text_done < embedding_started + 0.3  # hidden by it


def test_concurrent_hybrid_recalls_share_a_small_pool(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    """Many threads recalling at once through one service (a pool of 4 + 4 connections, two recall threads):
    each recall holds one connection at a time, so none waits on another; every result is the one a recall
    alone gives."""
    service, db, namespace = engine_service
    fill(service, db, namespace)
    queries = ["ferry porto", "the tide at noon", "orchid water sunday", "garden harbour pier", "lighthouse"]
    alone = {query: recalled(service, query, k=5) for query in queries}
    asked = [queries[i % len(queries)] for i in range(200)]
    with ThreadPoolExecutor(max_workers=12) as callers:
        results = list(callers.map(lambda query: recalled(service, query, k=5), asked, timeout=120))
    assert results == [alone[query] for query in asked]
    with db.engine.connect() as conn:  # the pool's connections are all back, none left in a transaction
        busy = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'"
            )
        ).scalar_one()
    assert busy == 0
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("text_first", [False, True])
def test_a_memory_deleted_between_the_sides_still_leaves_k_results(
    engine_service: tuple[MemoryService, Database, str], monkeypatch: pytest.MonkeyPatch, text_first: bool
) -> None:
    """The sides run in transactions of their own: a memory the text side found and another connection
    deleted (or expired) before the fusion is not returned, and the next best takes its place — with the
    text side handed over after the vector side ran (then a third statement fuses them), and before it
    started (one statement, the vector side with the fusion). Each way forced: which one a recall takes is
    a race between the embedding and the text side."""
    service, db, _ = engine_service
    for i in range(12):
        service.remember(f"the ferry to porto leaves from pier {i}")
    service.indexing.settle()  # (its steps into the graph run through unit.run too, on a recall thread)
    found_by_text = service.recall("ferry porto pier", k=5, mode="text").memories
    gone, expired = found_by_text[0].id, found_by_text[1].id
    run_aside = service.unit.run_aside
    vector_side_ran = threading.Event()

    def then_changed(*args: Any) -> Future[list[Any]] | None:
        inner = run_aside(*args)
        assert inner is not None
        handed: Future[list[Any]] = Future()

        def hand_over() -> None:
            rows = inner.result()
            assert {row[0] for row in rows} >= {gone, expired}
            if not text_first:
                assert vector_side_ran.wait(30)
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM memories WHERE id = :id"), {"id": gone})
                conn.execute(text("UPDATE memories SET expired_at = now() WHERE id = :id"), {"id": expired})
            handed.set_result(rows)

        if text_first:
            hand_over()
        else:
            threading.Thread(target=hand_over).start()
        return handed

    ran: list[str] = []
    run = service.unit.run

    def recording(ns: str, sql: str, params: Any, settings: Any = (), **kw: Any) -> list[Any]:
        ran.append(sql)  # (the text side's too: run_aside runs it through this on its thread)
        rows = run(ns, sql, params, settings, **kw)
        if sql.endswith("AS snapshot FROM nearest"):  # the vector side alone
            vector_side_ran.set()
        return rows

    monkeypatch.setattr(service.unit, "run_aside", then_changed)
    monkeypatch.setattr(service.unit, "run", recording)
    found = service.recall("ferry porto pier", k=5, mode="hybrid").memories
    assert len(found) == 5 and not {gone, expired} & {m.id for m in found}
    # The sides at once did it (the text side, then the rest in one or two statements), not a retry.
    if text_first:
        assert len(ran) == 2 and "txt_ids" in ran[-1] and "vec_ids" not in ran[-1], ran
    else:
        assert len(ran) == 3 and "vec_ids" in ran[-1] and vector_side_ran.is_set(), ran


def scores_in(conn: Connection, fused: RecallStatement) -> list[tuple[int, float]]:
    """A fusing statement's (id, score) rows, run in the connection's transaction."""
    return [(r[0], r[8]) for r in run_in(conn, fused.sql, fused.params, fused.settings)]


def test_the_fusion_checks_what_is_gone_only_when_a_transaction_ended_between(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    """The fusion skips its check of what left the scope when both sides read the snapshot it reads (nothing
    can be gone), and makes it when either read another. Shown with a memory id no row has, given back as the
    text side's best: in one REPEATABLE READ transaction (one snapshot for the sides and the fusion) it is not
    checked, so it takes the first text rank (and a place among the k) and every other text rank moves down;
    with a side's snapshot from before, it is found gone and the ranks are the sides' own. On a server in
    recovery it is always checked, wherever the sides read. (A memory deleted between the sides and the
    fusion: test_a_memory_deleted_between_the_sides_still_leaves_k_results.)"""
    service, db, namespace = engine_service
    for i in range(12):
        service.remember(f"the ferry to porto leaves from pier {i}")
    service.indexing.settle()
    query = "ferry porto pier"
    statement = recall_statement(
        service.embedder.embed([query])[0], scope=Scope(namespace), k=5, mode="hybrid", query_text=query
    )
    split = statement.split
    assert split is not None
    with db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        conn.execute(
            text(settings_sql(0, True, True, named=True)), settings_values((), namespace)
        )  # as memagent_app, in the namespace (row-level security)
        text_rows = run_in(conn, split.text_sql, statement.params, statement.settings)
        assert text_rows[0][2] != "in recovery"
        vector_rows = run_in(conn, split.vector_sql, statement.params, statement.settings)
        assert text_rows and vector_rows and {r[2] for r in text_rows} == {r[2] for r in vector_rows}
        never = (10**15, max(r[1] for r in text_rows) + 1.0, text_rows[0][2])

        def scores(fused: RecallStatement) -> list[tuple[int, float]]:
            return scores_in(conn, fused)

        sides = scores(statement.fused(vector_rows, text_rows))
        assert len(sides) == 5
        unchecked = scores(statement.fused(vector_rows, [never, *text_rows]))
        before = "1:1:"  # a snapshot older than any the sides could read
        stale_text = [(i, s, before) for i, s, _ in [never, *text_rows]]
        stale_vector = [(i, d, before) for i, d, _ in vector_rows]
        checked_text = scores(statement.fused(vector_rows, stale_text))
        checked_vector = scores(statement.fused(stale_vector, [never, *text_rows]))
        with_text = scores(statement.with_text([never, *text_rows]))
        with_stale_text = scores(statement.with_text(stale_text))
    assert len(unchecked) == 4 and unchecked != sides  # not checked: the id took a place, the ranks moved
    assert checked_text == sides and checked_vector == sides  # checked: the id is gone
    assert with_text != sides and with_stale_text == sides  # the same with the vector side in the statement

    # On a server in recovery (a hot standby), where a snapshot's text does not show every transaction
    # running, the check is always made: pg_is_in_recovery() made true here by one of the same name ahead
    # of pg_catalog on the search path, in a transaction rolled back.
    recovering = "CREATE FUNCTION public.pg_is_in_recovery() RETURNS boolean LANGUAGE sql AS 'SELECT true'"
    with (
        db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
        conn.begin() as transaction,
    ):
        conn.execute(text(recovering))
        conn.execute(text(f"GRANT EXECUTE ON FUNCTION public.pg_is_in_recovery() TO {APP_ROLE}"))
        conn.execute(text("SET LOCAL search_path = public, pg_catalog"))
        conn.execute(text(settings_sql(0, True, True, named=True)), settings_values((), namespace))
        standby_text = run_in(conn, split.text_sql, statement.params, statement.settings)
        standby_vector = run_in(conn, split.vector_sql, statement.params, statement.settings)
        assert {r[2] for r in standby_text + standby_vector} == {"in recovery"}
        with_never = [(10**15, never[1], "in recovery"), *standby_text]
        in_recovery = scores_in(conn, statement.fused(standby_vector, with_never))
        with_text_in_recovery = scores_in(conn, statement.with_text(with_never))
        # the sides read on a primary (the snapshot this one reads, as its text shows it), the fusion here
        shown = conn.execute(text("SELECT CAST(pg_catalog.pg_current_snapshot() AS text)")).scalar_one()
        from_primary = [(i, x, shown) for i, x, _ in with_never]
        vector_from_primary = [(i, x, shown) for i, x, _ in standby_vector]
        fused_here = scores_in(conn, statement.fused(vector_from_primary, from_primary))
        # the sides read here, the fusion on a primary (pg_catalog's function first again; the same snapshot)
        conn.execute(text("SET LOCAL search_path = pg_catalog, public"))
        fused_on_primary = scores_in(conn, statement.fused(standby_vector, with_never))
        transaction.rollback()
    assert in_recovery == sides and with_text_in_recovery == sides  # checked: the id is gone
    assert fused_here == sides and fused_on_primary == sides
