"""The HNSW index: halfvec or vector, rebuilt without losing recall, dropped for bulk loads and repaired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import cast

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from memagent.cli.app import app
from memagent.config import Settings
from memagent.store import hnsw, schema
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.usecases.maintenance import IndexMaintenance
from memagent.usecases.service import MemoryService
from tests.conftest import DIM, explain, fake_embedder, make_database, provider_env, sent_by_unit
from tests.fake_openai import FakeOpenAI

TOPICS = ["rust compilers", "alpine hiking", "sourdough baking", "jazz piano", "tide pools", "chess openings"]
runner = CliRunner()


@pytest.fixture
def db(embedded: EmbeddedPostgres) -> Iterator[Database]:
    """A database of its own: these tests drop and rebuild the index, and commit."""
    url = make_database(embedded, "memagent_index")
    with Database(Settings(), url=url) as database:
        schema.upgrade(database, "head", embedding_dim=DIM)
        yield database


@pytest.fixture
def memory(db: Database, fake: FakeOpenAI) -> MemoryService:
    service = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace="idx"))
    service.remember_many([f"notes about {topic} number {i}" for i in range(10) for topic in TOPICS])
    return service


def db_env(db: Database, fake: FakeOpenAI) -> dict[str, str]:
    """memagent's settings for this test's database and the loopback provider."""
    return {
        "MEMAGENT_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        **provider_env(fake),
    }


def index_definition(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": hnsw.INDEX_NAME}
        ).scalar_one_or_none()


def test_halfvec_index_serves_recall_with_the_same_answers(db: Database, memory: MemoryService) -> None:
    before = [m.content for m in memory.recall("jazz piano", k=5, mode="vector")]
    hybrid_before = {m.content for m in memory.recall("jazz piano", k=5, mode="hybrid")}

    IndexMaintenance(memory).rebuild("halfvec")
    definition = index_definition(db)
    assert definition is not None and f"halfvec({DIM})" in definition and "halfvec_cosine_ops" in definition
    assert IndexMaintenance(memory).status().kind == "halfvec"

    vector_hits = memory.recall("jazz piano", k=5, mode="vector")
    assert [m.content for m in vector_hits] == before
    # Near-ties may swap places in half precision; the same memories come back.
    assert {m.content for m in memory.recall("jazz piano", k=5, mode="hybrid")} == hybrid_before
    # Scores are full-precision cosine similarities, not the half-precision ones the index orders by.
    with db.engine.connect() as conn:
        exact = conn.execute(
            text("SELECT embedding FROM memories WHERE content = :c"), {"c": vector_hits[0].content}
        ).scalar_one()
    query = memory.embedder.embed(["jazz piano"])[0]
    exact_score = float(query @ np.asarray(json.loads(exact), dtype=np.float32))
    assert vector_hits[0].score == pytest.approx(exact_score, abs=1e-5)

    # The planner picks the halfvec index for the statements recall really sends.
    with sent_by_unit(memory) as sent:
        memory.recall("jazz piano", k=5, mode="vector")
        memory.recall("jazz piano", k=5, mode="hybrid")
    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_sort = off"))
        assert hnsw.INDEX_NAME in explain(conn, sent, "<=>", "ORDER BY distance, id")
        # (hybrid's vector side: in its own statement, its depth written in, or with the fusion when the
        # text side came first)
        side = next(
            item
            for item in reversed(sent)
            if "nearest_index" in item[0] and ("%(depth)s" in item[0] or "LIMIT 50" in item[0])
        )
        assert hnsw.INDEX_NAME in explain(conn, [side], "<=>")

    IndexMaintenance(memory).rebuild("vector")
    definition = index_definition(db)
    assert definition is not None and "halfvec" not in definition and "vector_cosine_ops" in definition
    assert [m.content for m in memory.recall("jazz piano", k=5, mode="vector")] == before


def test_a_missing_index_is_repaired_unless_a_bulk_load_holds_it(db: Database, memory: MemoryService) -> None:
    IndexMaintenance(memory).rebuild("halfvec")
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {hnsw.INDEX_NAME}"))
    # Recall still works meanwhile (exact scan).
    assert memory.recall("tide pools", k=3, mode="vector")[0].content.startswith("notes about tide pools")

    with db.engine.connect() as holder, holder.begin():
        assert holder.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": hnsw.INDEX_LOCK_KEY}
        ).scalar_one()
        assert IndexMaintenance(memory).repair() is False  # a live loader owns the index
        assert index_definition(db) is None

    assert IndexMaintenance(memory).repair() is True
    definition = index_definition(db)
    assert definition is not None and "halfvec" in definition  # the recorded kind, not the default
    assert IndexMaintenance(memory).repair() is False


def test_startup_during_a_bulk_load_never_trips_over_its_ddl(db: Database, memory: MemoryService) -> None:
    """A process opening the database while another drops and rebuilds the index (a bulk import) must not
    fail looking at the catalogue: the repair check takes the maintenance lock before it looks."""
    import threading

    stop = threading.Event()

    def bulk_loads() -> None:
        while not stop.is_set():
            with db.engine.connect() as conn, conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": hnsw.INDEX_LOCK_KEY})
                conn.execute(text(f"DROP INDEX IF EXISTS {hnsw.INDEX_NAME}"))
                conn.execute(text(hnsw.create_sql("vector", DIM)))

    loader = threading.Thread(target=bulk_loads)
    loader.start()
    try:
        for _ in range(40):
            IndexMaintenance(memory).repair()  # never raises, whatever the loader is doing
    finally:
        stop.set()
        loader.join()
    assert index_definition(db) is not None


def test_bulk_load_drops_the_index_and_builds_it_once(db: Database, memory: MemoryService) -> None:
    maintenance = IndexMaintenance(memory)
    with maintenance.bulk_load(lambda _: 10, min_rows=1000) as without:
        assert without is False and index_definition(db) is not None  # a small load keeps the index
    with maintenance.bulk_load(lambda _: 50, min_rows=10) as without:
        assert without is False  # smaller than the table (60 rows): cheaper to insert into the graph
    messages: list[str] = []
    analysed_before = last_analyze(db)
    with maintenance.bulk_load(lambda _: 100, messages.append, min_rows=10) as without:
        assert without is True and index_definition(db) is None
        memory.remember_many([f"bulk memory {i} about tide pools" for i in range(40)])
        assert len(memory.recall("tide pools", k=50, mode="vector")) == 50
    assert messages == ["Building the vector index…"]
    assert index_definition(db) is not None
    with db.engine.connect() as conn:
        indexed = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = :name"), {"name": hnsw.INDEX_NAME}
        ).scalar_one()
    assert indexed == 100  # the graph was built once over every row, old and bulk-loaded
    assert last_analyze(db) > analysed_before  # and analysed: recall plans with the loaded rows' statistics
    messages.clear()
    with pytest.raises(KeyboardInterrupt), maintenance.bulk_load(lambda _: 200, messages.append, min_rows=10):
        raise KeyboardInterrupt  # a Ctrl-C midway: the index is built before it goes on, and the user told
    assert messages == ["Stopping: first building the vector index the load set aside (recall needs it)…"]
    assert index_definition(db) is not None


def test_a_second_ctrl_c_during_the_build_waits_for_it_to_be_committed(
    db: Database, memory: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg2 raises a Ctrl-C that came during a statement when the statement returns: inside the build's
    transaction, it rolled the build back (the next memagent command then built it all again)."""
    build = hnsw.IndexRepository.create_all

    def build_then_ctrl_c(self: hnsw.IndexRepository, kind: hnsw.IndexKind, dim: int) -> None:
        build(self, kind, dim)
        os.kill(os.getpid(), signal.SIGINT)  # (its handler runs now, as after psycopg2's statement returns)

    monkeypatch.setattr(hnsw.IndexRepository, "create_all", build_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal
    try:
        with pytest.raises(KeyboardInterrupt), IndexMaintenance(memory).bulk_load(lambda _: 200, min_rows=10):
            raise KeyboardInterrupt  # the first Ctrl-C, during the load
    finally:
        signal.signal(signal.SIGINT, previous)
    assert index_definition(db) is not None  # built, committed, then the second Ctrl-C answered


def test_a_small_table_is_indexed_serially_a_large_one_in_parallel(
    db: Database, memory: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parallel build first sets aside its whole build memory in shared memory (a second for 2 GB, while
    an empty table's serial build takes milliseconds): below hnsw.PARALLEL_MIN_ROWS memories with an
    embedding the build is serial; from there on it asks for the machine's workers."""

    def workers_asked() -> str:
        with db.sessions.begin() as session:
            indexes = hnsw.IndexRepository(session)
            indexes.drop()
            indexes.create("vector", DIM)
            asked = session.execute(text("SELECT current_setting('max_parallel_maintenance_workers')"))
            return str(asked.scalar_one())

    assert workers_asked() == "0"  # the fixture's 60 memories
    monkeypatch.setattr(hnsw, "PARALLEL_MIN_ROWS", 60)
    assert workers_asked() == str(hnsw.build_workers())
    assert index_definition(db) is not None
    assert len(memory.recall("tide pools", k=10, mode="vector")) == 10


def last_analyze(db: Database) -> datetime:
    """When memories was last analysed by hand (ANALYZE; the epoch if never)."""
    with db.engine.connect() as conn:
        when = conn.execute(
            text("SELECT coalesce(last_analyze, 'epoch') FROM pg_stat_user_tables WHERE relname = 'memories'")
        ).scalar_one()
    return cast(datetime, when)


KILLED_LOADER = """
import os, sys
from memagent.config import get_settings
from memagent.usecases.maintenance import IndexMaintenance
from memagent.bootstrap import open_service

with open_service(get_settings()) as memory:
    with IndexMaintenance(memory).bulk_load(lambda _: 10**6, min_rows=1):
        memory.remember("written while the index is dropped")
        print("dropped", flush=True)
        os.kill(os.getpid(), 9)
"""


def test_a_bulk_load_killed_with_sigkill_is_repaired_by_the_next_run(
    db: Database, memory: MemoryService, fake: FakeOpenAI
) -> None:
    env = {**os.environ, **db_env(db, fake), "MEMAGENT_NAMESPACE": "idx"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_LOADER], env=env, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -9 and "dropped" in killed.stdout
    assert index_definition(db) is None

    result = runner.invoke(app, ["recall", "written while the index", "--mode", "vector", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert "Rebuilt the vector index" in result.stderr
    assert json.loads(result.stdout)[0]["content"] == "written while the index is dropped"
    assert index_definition(db) is not None


def test_index_command_shows_and_switches_the_kind(
    db: Database, memory: MemoryService, fake: FakeOpenAI
) -> None:
    env = db_env(db, fake)
    shown = runner.invoke(app, ["index"], env=env)
    assert (
        shown.exit_code == 0
        and "HNSW index: vector, in place" in shown.stderr
        and "60 memories" in shown.stderr
    )
    assert "ef_construction" not in shown.stderr
    with db.engine.begin() as conn:  # as revision 0036's upgrade leaves an index a long transaction held
        conn.execute(text(f"ALTER INDEX {hnsw.INDEX_NAME} SET (ef_construction = 64)"))
    sparse = runner.invoke(app, ["index"], env=env)
    assert "1 of its graphs grow with ef_construction below 128 (made before revision 0036): --rebuild" in (
        sparse.stderr
    )
    switched = runner.invoke(app, ["index", "--kind", "halfvec"], env=env)
    assert switched.exit_code == 0 and "HNSW index: halfvec, in place" in switched.stderr
    assert "ef_construction" not in switched.stderr  # built again: at 128
    bad = runner.invoke(app, ["index", "--kind", "ivfflat"], env=env)
    assert bad.exit_code == 2 and "--kind must be vector or halfvec" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
