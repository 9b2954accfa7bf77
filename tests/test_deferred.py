"""Deferred indexing (revision 0028, memagent.store.deferred): a memory stored in one statement is
committed outside the HNSW graph, found at once by recall all the same, and put in the graph just after."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text

from memagent.api import Memory
from memagent.config import Settings
from memagent.store import hnsw, schema
from memagent.store.database import Database
from memagent.store.deferred import BATCH, INDEX_NEW
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.search import SearchMode
from memagent.usecases.service import MemoryService
from tests.conftest import DIM, fake_embedder, make_database
from tests.fake_openai import FakeOpenAI

WORDS = [
    "harbour",
    "lantern",
    "violin",
    "cedar",
    "meadow",
    "quartz",
    "falcon",
    "saffron",
    "glacier",
    "orchard",
]


def unindexed(engine: Engine, namespace: str) -> list[str]:
    """The contents of the namespace's memories not in the HNSW graph."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT content FROM memories WHERE namespace = :ns AND NOT indexed ORDER BY id"),
            {"ns": namespace},
        )
        return [str(row[0]) for row in rows]


@pytest.fixture
def held(engine_service: tuple[MemoryService, Database, str]) -> Iterator[tuple[MemoryService, Engine, str]]:
    """A service over an engine whose indexing steps are held back (as if its process were killed after the
    store), with ten memories stored and indexed first."""
    service, db, namespace = engine_service
    service.remember("the first memory of the namespace: the full path, indexed as it is stored")
    for word in WORDS:
        service.remember(f"a note about the {word} and nothing else")
    service.indexing.settle()
    assert unindexed(db.engine, namespace) == []
    service.indexing.start = lambda namespace: None  # type: ignore[method-assign]
    yield service, db.engine, namespace
    vars(service.indexing).pop("start", None)


def test_a_memory_left_out_of_the_graph_is_found_at_once_as_it_will_be_once_indexed(
    held: tuple[MemoryService, Engine, str],
) -> None:
    service, engine, namespace = held
    fresh = "the spare key of the boathouse hangs behind the tide table"
    stored = service.remember(fresh)
    assert unindexed(engine, namespace) == [fresh]  # committed, not yet in the graph
    modes: tuple[SearchMode, ...] = ("vector", "hybrid")
    before = {mode: service.recall("where is the boathouse key?", k=3, mode=mode) for mode in modes}
    for found in before.values():
        assert found[0].id == stored.id  # by its vector too: the vector side reads the memories not indexed
    itself = service.recall(fresh, k=1, mode="vector")[0]
    assert itself.id == stored.id and itself.distance == pytest.approx(0.0, abs=1e-6)
    vars(service.indexing).pop("start")
    service.indexing.start(namespace)
    service.indexing.settle()
    assert unindexed(engine, namespace) == []
    for mode, found in before.items():  # the same memories, scores and distances from the graph
        after = service.recall("where is the boathouse key?", k=3, mode=mode)
        assert after[0] == found[0]
        # (the notes tie in distance to the question, so which of them fill the rest can differ between the
        # exact scan and the graph's approximate one: their distances and scores cannot)
        for now, then in zip(after, found, strict=True):
            assert (now.distance, now.score) == pytest.approx((then.distance, then.score))


def test_a_memory_not_yet_indexed_takes_its_place_among_the_indexed_ones(
    held: tuple[MemoryService, Engine, str],
) -> None:
    service, engine, namespace = held
    service.remember("a second note about the violin, kept apart")
    assert len(unindexed(engine, namespace)) == 1
    for k in (1, 2, 5, 11):
        found = service.recall("a note about the violin", k=k, mode="vector")
        assert len(found) == k
        distances = [m.distance or 0.0 for m in found]
        assert distances == sorted(distances)
        assert {m.content for m in found[:2]} == {
            "a note about the violin and nothing else",
            "a second note about the violin, kept apart",
        } or k == 1


def test_what_a_killed_process_left_out_of_the_graph_is_indexed_by_the_next_one(
    held: tuple[MemoryService, Engine, str], db_url: str, fake: FakeOpenAI
) -> None:
    service, engine, namespace = held
    service.remember("stored just before the process was killed")
    assert len(unindexed(engine, namespace)) == 1
    with Database(Settings(), url=db_url) as db:  # the next process: its first call catches up
        later = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace=f"other-{uuid.uuid4()}"))
        later.recall("anything at all")
        later.indexing.settle()
    assert unindexed(engine, namespace) == []


def test_an_indexing_step_never_waits_for_a_writer_holding_a_row(
    held: tuple[MemoryService, Engine, str],
) -> None:
    service, engine, namespace = held
    service.remember("held by another transaction")
    service.remember("free to index")
    with engine.connect() as writer, writer.begin():
        writer.execute(
            text("SELECT id FROM memories WHERE namespace = :ns AND content = :c FOR UPDATE"),
            {"ns": namespace, "c": "held by another transaction"},
        )
        done = threading.Event()

        def step() -> None:
            service.unit.run(namespace, INDEX_NEW, {"batch": BATCH})
            done.set()

        thread = threading.Thread(target=step)
        thread.start()
        assert done.wait(10), "the step waited for the writer's lock"
        thread.join()
        assert unindexed(engine, namespace) == ["held by another transaction"]
    assert service.unit.run(namespace, INDEX_NEW, {"batch": BATCH}) == [(1,)]
    assert unindexed(engine, namespace) == []


def test_an_index_build_takes_in_the_memories_not_yet_indexed(
    held: tuple[MemoryService, Engine, str],
) -> None:
    service, engine, namespace = held
    service.remember("stored while the graph is rebuilt")
    with service.unit(admin=True) as store:
        kind = store.space.index_kind()
        store.index.drop()
        store.index.create(kind, service.embedder.dim)
    assert unindexed(engine, namespace) == []
    assert (
        service.recall("rebuilt graph", k=1, mode="vector")[0].content == "stored while the graph is rebuilt"
    )


def test_without_a_recall_thread_a_store_indexes_its_memory_itself(service: MemoryService) -> None:
    """Inside a caller's transaction (and over asyncpg) no step can run beside the call: none is deferred."""
    service.remember("first")
    service.remember("second, through the one-statement path")
    with service.unit(service.settings.namespace) as store:
        assert store.memories.count(service.scope(None)) == 2
        left = store._session.execute(text("SELECT count(*) FROM memories WHERE NOT indexed")).scalar_one()
    assert left == 0


def test_closing_the_api_waits_for_its_indexing_steps(db_url: str, fake: FakeOpenAI, engine: Engine) -> None:
    namespace = f"fast-{uuid.uuid4().hex[:8]}"
    with Memory(database_url=db_url, embedder=fake_embedder(fake), namespace=namespace) as memory:
        for word in WORDS:
            memory.remember(f"the {word} is remembered through the API")
    assert unindexed(engine, namespace) == []
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM memories WHERE namespace = :ns"), {"ns": namespace})


def test_the_revision_both_ways_keeps_the_index_kind_and_every_memory(embedded: EmbeddedPostgres) -> None:
    """0027 → 0028 → 0027 on a database with memories and a halfvec index: the index is rebuilt partial, of
    the same kind, and whole again on the way down; the memories and recall are the same throughout."""
    url = make_database(embedded, "memagent_deferred_migration")
    vectors = np.random.default_rng(5).normal(size=(40, DIM)).astype(np.float32)
    with Database(Settings(), url=url) as db:
        schema.upgrade(db, "0027", embedding_dim=DIM)
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO embedding_space (id, model, dimension, index_kind)"
                    " VALUES (1, 'm', :d, 'halfvec')"
                ),
                {"d": DIM},
            )
            conn.execute(text(f"DROP INDEX {hnsw.INDEX_NAME}"))
            conn.execute(text(hnsw.create_sql("halfvec", DIM, deferred=False)))
            for i, vector in enumerate(vectors):
                conn.execute(
                    text(
                        "INSERT INTO memories (namespace, session_id, content, embedding, embedding_model,"
                        " content_hash) VALUES ('n', 's', :c, CAST(:v AS vector), 'm', md5(:c))"
                    ),
                    {"c": f"memory {i}", "v": str(vector.tolist())},
                )

        def state() -> tuple[str, list[Any]]:
            with db.engine.connect() as conn:
                indexdef = conn.execute(
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": hnsw.INDEX_NAME}
                ).scalar_one()
                rows = conn.execute(text("SELECT id, content FROM memories ORDER BY id")).all()
            return indexdef, list(rows)

        before = state()
        assert "halfvec" in before[0] and "WHERE" not in before[0]
        schema.upgrade(db, "0028")
        after = state()
        assert after[0] == before[0] + " WHERE indexed" and after[1] == before[1]
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT bool_and(indexed) FROM memories")).scalar_one()
        schema.downgrade(db, "0027")
        assert state() == before


def test_threads_storing_at_once_leave_every_memory_indexed_and_found(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    service, db, namespace = engine_service
    service.remember("the first memory: the full path")
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(15):
                content = f"thread {t} note {i} about the {WORDS[i % len(WORDS)]}"
                assert service.recall(content, k=1, mode="vector")  # (a recall thread busy now and then)
                stored = service.remember(content)
                assert service.recall(content, k=1, mode="vector")[0].id == stored.id  # found at once
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    service.indexing.settle()
    assert unindexed(db.engine, namespace) == []
    assert service.count() == 61


def test_an_index_build_never_deadlocks_with_a_writer_touching_a_memory_it_takes_in(
    held: tuple[MemoryService, Engine, str],
) -> None:
    """A build takes the memories not yet indexed in (their rows, then the table): it holds writes first,
    so a writer that wrote before it and then touches one of them finishes, and the build follows."""
    from memagent.usecases.maintenance import IndexMaintenance

    service, engine, namespace = held
    waiting = service.remember("just stored, not yet indexed")
    with service.unit(admin=True) as store:
        store.index.drop()  # as a killed bulk load leaves it: repair() builds it again
    outcome: dict[str, object] = {}
    with engine.connect() as writer:
        transaction = writer.begin()
        writer.execute(
            text(
                "UPDATE memories SET importance = importance WHERE namespace = :ns AND content LIKE 'a note%'"
            ),
            {"ns": namespace},
        )

        def repair() -> None:
            try:
                outcome["repaired"] = IndexMaintenance(service).repair()
            except Exception as exc:  # (reported below)
                outcome["error"] = exc

        thread = threading.Thread(target=repair)
        thread.start()
        thread.join(1.0)  # the build waits for the writer
        writer.execute(text("DELETE FROM memories WHERE id = :id"), {"id": waiting.id})
        transaction.commit()
        thread.join()
    assert outcome == {"repaired": True}
    assert unindexed(engine, namespace) == []


@pytest.mark.parametrize("kind_known", [True, False])
def test_a_vector_the_halfvec_index_cannot_hold_is_refused_by_the_store_not_left_to_block_the_steps(
    engine_service: tuple[MemoryService, Database, str], kind_known: bool
) -> None:
    """kind_known False: the service last learnt the index's kind before the rebuild (it only stored since):
    its one-statement store finds the kind changed and takes the full path (an outside review's case)."""
    from memagent.errors import DatabaseError
    from memagent.usecases.maintenance import IndexMaintenance

    service, db, namespace = engine_service
    service.remember("the first memory: the full path")
    IndexMaintenance(service).rebuild("halfvec")
    try:
        if kind_known:
            service.recall("the space and its index kind, known")
        plain = service.embedder.embed

        def unnormalised(texts: list[str]) -> Any:  # (a provider that does not normalise: finite, not zero)
            return np.array(plain(texts)) * np.array([[1e6 if "huge" in t else 1.0] for t in texts])

        service.embedder.embed = unnormalised  # type: ignore[method-assign,assignment]
        with pytest.raises(DatabaseError, match="out of range for type halfvec"):
            service.remember("huge values")
        service.remember("an ordinary memory after it")
        service.indexing.settle()
        assert unindexed(db.engine, namespace) == []
    finally:
        IndexMaintenance(service).rebuild("vector")


def test_a_forked_child_stores_even_if_a_thread_held_the_indexing_lock_at_the_fork(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    import os

    service, db, namespace = engine_service
    service.remember("the first memory: the full path")
    service.recall("the space, known")
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with service.indexing._lock:
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    taken.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: a deferred store takes the indexing lock
        code = 1
        try:
            db.engine.dispose(close=False)  # (the parent's pooled connections are not the child's)
            service.remember("stored by the forked child")
            service.indexing.settle()
            code = 0
        finally:
            os._exit(code)
    release.set()
    thread.join()
    deadline = time.monotonic() + 30
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if ended[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(ended[1]) == 0
    assert unindexed(db.engine, namespace) == []
    assert service.count() == 2
