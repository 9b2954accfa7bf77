"""A namespace's own HNSW graph (`memagent index --namespace`): it serves that namespace's recall with the
same answers, no other namespace's; rebuilds, bulk loads, repairs and re-embedding keep it; any namespace
text is safe in it."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from sqlalchemy import Connection, text
from typer.testing import CliRunner

from memagent.cli.app import app
from memagent.config import Settings
from memagent.errors import MemagentError
from memagent.store import namespace_graphs, schema
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.usecases.maintenance import GraphStatus, IndexMaintenance
from memagent.usecases.reembed import Reembedder
from memagent.usecases.service import MemoryService
from tests.conftest import (
    DIM,
    explain,
    fake_embedder,
    make_database,
    provider_env,
    schema_drift,
    sent_by_unit,
)
from tests.fake_openai import FakeOpenAI

TOPICS = ["rust compilers", "alpine hiking", "sourdough baking", "jazz piano", "tide pools", "chess openings"]
ODD = "o'brien: %s :x \\x $$ \u00e9t\u00e9"  # quotes, colons, percent, backslash, dollars
runner = CliRunner()


@pytest.fixture
def db(embedded: EmbeddedPostgres) -> Iterator[Database]:
    """A database of its own: these tests build and drop indexes."""
    url = make_database(embedded, "memagent_graphs")
    with Database(Settings(), url=url) as database:
        schema.upgrade(database, "head", embedding_dim=DIM)
        yield database


def service(db: Database, fake: FakeOpenAI, namespace: str) -> MemoryService:
    return MemoryService(db.sessions, fake_embedder(fake), Settings(namespace=namespace))


def scattered(text_: str, dim: int) -> np.ndarray:
    """A vector drawn at random, seeded by the text: no two memories at the same distance from a query (the
    bag-of-words vectors of these short texts tie by the dozen, and a graph may return either of a tie)."""
    seed = int.from_bytes(hashlib.sha256(text_.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def memory(db: Database, fake: FakeOpenAI) -> MemoryService:
    """60 memories in "big", 30 in "other", all in the table's graph."""
    fake.embedding_handler = scattered
    for namespace, count in (("big", 10), ("other", 5)):
        service(db, fake, namespace).remember_many(
            [f"notes about {topic} number {i} in {namespace}" for i in range(count) for topic in TOPICS]
        )
    big = service(db, fake, "big")
    big.indexing.settle()
    return big


def definition(db: Database, namespace: str) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
            {"name": namespace_graphs.index_name(namespace)},
        ).scalar_one_or_none()


def plans(db: Database, memory: MemoryService, query: str) -> tuple[str, str]:
    """The plans of the vector recall and of hybrid's vector side that `memory` sends for `query`."""
    with sent_by_unit(memory) as sent:
        memory.recall(query, k=5, mode="vector")
        memory.recall(query, k=5, mode="hybrid")
    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_sort = off"))
        vector = explain(conn, sent, "<=>", "ORDER BY distance, id")
        side = next(
            item
            for item in reversed(sent)
            if "nearest_index" in item[0] and ("%(depth)s" in item[0] or "LIMIT 50" in item[0])
        )
        return vector, explain(conn, [side], "<=>")


def test_a_namespace_graph_serves_that_namespace_with_the_same_answers(
    db: Database, memory: MemoryService, fake: FakeOpenAI
) -> None:
    other = service(db, fake, "other")
    queries = ["jazz piano", "tide pools", "chess"]
    before = {q: [m.id for m in memory.recall(q, k=8, mode="vector")] for q in queries}
    hybrid_before = {q: [m.id for m in memory.recall(q, k=8)] for q in queries}
    other_before = [m.id for m in other.recall("jazz piano", k=8)]

    maintenance = IndexMaintenance(memory)
    assert maintenance.add_graph("big") is True
    assert maintenance.add_graph("big") is False  # one graph per namespace
    found = definition(db, "big")
    assert found is not None and "vector_cosine_ops" in found
    assert "WHERE (indexed AND ((namespace)::text = 'big'::text))" in found
    (graph,) = maintenance.status().graphs
    assert (graph.namespace, graph.rows, graph.present) == ("big", 60, True) and graph.size_bytes > 0

    name = namespace_graphs.index_name("big")
    vector, side = plans(db, memory, "jazz piano")
    assert name in vector and name in side
    vector, side = plans(db, other, "jazz piano")
    assert name not in vector and name not in side  # another namespace: the table's graph

    assert {q: [m.id for m in memory.recall(q, k=8, mode="vector")] for q in queries} == before
    assert {q: [m.id for m in memory.recall(q, k=8)] for q in queries} == hybrid_before
    assert [m.id for m in other.recall("jazz piano", k=8)] == other_before

    # A memory stored now joins the namespace's graph once indexed, and is found at once meanwhile.
    new = "a brand new note about jazz piano voicings"
    stored = memory.remember(new)
    assert memory.recall(new, k=1, mode="vector")[0].id == stored.id
    memory.indexing.settle()
    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        conn.execute(text("SET enable_bitmapscan = off"))
        conn.execute(text(f"SET hnsw.ef_search = {100}"))
        nearest = conn.execute(
            text(
                "SELECT id FROM memories WHERE indexed AND namespace = 'big'"
                " ORDER BY embedding <=> (SELECT embedding FROM memories WHERE id = :id) LIMIT 1"
            ),
            {"id": stored.id},
        ).scalar_one()
    assert nearest == stored.id

    assert maintenance.drop_graph("big") is True
    assert maintenance.drop_graph("big") is False
    assert definition(db, "big") is None and maintenance.status().graphs == ()
    assert [m.id for m in memory.recall("tide pools", k=8, mode="vector")] == before["tide pools"]


def test_rebuilds_bulk_loads_and_repairs_keep_the_namespace_graphs(
    db: Database, memory: MemoryService
) -> None:
    maintenance = IndexMaintenance(memory)
    maintenance.add_graph("big")
    maintenance.rebuild("halfvec")
    found = definition(db, "big")
    assert found is not None and f"halfvec({DIM})" in found and "halfvec_cosine_ops" in found
    vector, _ = plans(db, memory, "jazz piano")
    assert namespace_graphs.index_name("big") in vector

    with maintenance.bulk_load(lambda _: 100, min_rows=10) as without:
        assert without is True and definition(db, "big") is None  # dropped with the table's while it loads
        assert maintenance.status().graphs == (GraphStatus("big", 60, False, 0),)
        memory.remember_many([f"bulk memory {i} about tide pools" for i in range(40)])
    found = definition(db, "big")
    assert found is not None and "halfvec" in found  # built again, of the recorded kind
    with db.engine.connect() as conn:
        held = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = :name"),
            {"name": namespace_graphs.index_name("big")},
        ).scalar_one()
    assert held == 100  # the namespace's memories, old and bulk-loaded

    # A load killed after the drop: the next repair builds the table's graph and the namespace's.
    with db.sessions.begin() as session:
        from memagent.store.hnsw import IndexRepository

        IndexRepository(session).drop()
    assert definition(db, "big") is None
    assert maintenance.repair() is True
    assert definition(db, "big") is not None
    maintenance.rebuild("vector")
    found = definition(db, "big")
    assert found is not None and "halfvec" not in found
    with db.engine.connect() as conn:  # nothing set aside is left behind
        names = conn.execute(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%old%'")).all()
    assert names == []


def test_a_reembedding_builds_the_namespace_graphs_for_the_new_model(
    db: Database, memory: MemoryService, fake: FakeOpenAI
) -> None:
    IndexMaintenance(memory).add_graph("big")
    new = fake_embedder(fake, model="fake-embed-128", dim=128)
    assert Reembedder(memory, new, batch=50).run() == 90  # every namespace's memories
    moved = MemoryService(db.sessions, new, Settings(namespace="big"))
    (graph,) = IndexMaintenance(moved).status().graphs
    assert graph.present and graph.rows == 60
    vector, side = plans(db, moved, "jazz piano")
    assert namespace_graphs.index_name("big") in vector and namespace_graphs.index_name("big") in side
    with db.engine.connect() as conn:
        held = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = :name"),
            {"name": namespace_graphs.index_name("big")},
        ).scalar_one()
    assert held == 60


def held_by_graph(db: Database, namespace: str) -> int:
    """How many memories the namespace graph's condition holds (exactly the namespace's, if quoted right)."""
    with db.engine.connect() as conn:
        predicate = conn.execute(
            text(
                "SELECT pg_get_expr(x.indpred, x.indrelid) FROM pg_index x JOIN pg_class i"
                " ON i.oid = x.indexrelid WHERE i.relname = :name"
            ),
            {"name": namespace_graphs.index_name(namespace)},
        ).scalar_one()
        held = text(f"SELECT count(*) FROM memories WHERE {predicate.replace(':', chr(92) + ':')}")
        return int(conn.execute(held).scalar_one())


def test_any_namespace_text_is_safe_in_a_graph(db: Database, fake: FakeOpenAI) -> None:
    fake.embedding_handler = scattered
    odd = service(db, fake, ODD)
    odd.remember_many([f"notes about {topic}" for topic in TOPICS])
    odd.indexing.settle()
    before = [m.id for m in odd.recall("jazz piano", k=3, mode="vector")]
    maintenance = IndexMaintenance(odd)
    assert maintenance.add_graph(ODD) is True
    assert maintenance.status().graphs[0].namespace == ODD
    assert held_by_graph(db, ODD) == len(TOPICS)
    assert [m.id for m in odd.recall("jazz piano", k=3, mode="vector")] == before
    vector, side = plans(db, odd, "jazz piano")  # (sent as text: no namespace but a plain one is written in)
    assert namespace_graphs.index_name(ODD) in vector and namespace_graphs.index_name(ODD) in side
    maintenance.rebuild("halfvec")  # built again in the rebuild's transaction, quoted the same way
    assert held_by_graph(db, ODD) == len(TOPICS)
    with pytest.raises(Exception, match="invalid namespace"):
        maintenance.add_graph("*")
    assert maintenance.drop_graph(ODD) is True


def test_index_command_adds_lists_and_drops_a_namespace_graph(
    db: Database, memory: MemoryService, fake: FakeOpenAI
) -> None:
    env = {"MEMAGENT_DATABASE_URL": db.engine.url.render_as_string(hide_password=False), **provider_env(fake)}
    added = runner.invoke(app, ["index", "--namespace", "big"], env=env)
    assert added.exit_code == 0, added.output
    assert "Building a graph for namespace 'big'" in added.output
    assert "namespace 'big': a graph of its own" in added.output and "60 memories" in added.output
    shown = runner.invoke(app, ["index"], env=env)
    assert "namespace 'big': a graph of its own" in shown.output
    again = runner.invoke(app, ["index", "--namespace", "big"], env=env)
    assert "has a graph of its own already" in again.output
    dropped = runner.invoke(app, ["index", "--namespace", "big", "--drop"], env=env)
    assert dropped.exit_code == 0 and "Dropped the graph of namespace 'big'" in dropped.output
    assert "a graph of its own" not in dropped.output.split("Dropped", 1)[1]
    alone = runner.invoke(app, ["index", "--drop"], env=env)
    assert alone.exit_code != 0 and "--drop needs --namespace" in alone.output
    assert len(alone.output.strip().splitlines()) == 1
    both = runner.invoke(app, ["index", "--namespace", "big", "--drop", "--kind", "vector"], env=env)
    assert both.exit_code != 0 and len(both.output.strip().splitlines()) == 1
    # A bad namespace is refused before anything is built: one line, and the table's index untouched.
    for bad in ("*", "", "a\nb", "x" * 201):
        refused = runner.invoke(app, ["index", "--kind", "halfvec", "--namespace", bad], env=env)
        assert refused.exit_code != 0 and "invalid namespace" in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1
    assert IndexMaintenance(memory).status().kind == "vector"
    empty = runner.invoke(app, ["index", "--namespace", "nobody-yet"], env=env)
    assert empty.exit_code == 0 and "holds no memories yet" in empty.output


def test_a_recorded_graph_that_went_missing_is_built_again(db: Database, memory: MemoryService) -> None:
    maintenance = IndexMaintenance(memory)
    maintenance.add_graph("big")
    with db.engine.begin() as conn:
        assert schema_drift(conn) == []  # (a migration autogenerated here would not drop the graph)
        conn.execute(text(f"DROP INDEX {namespace_graphs.index_name('big')}"))
    assert maintenance.status().graphs == (GraphStatus("big", 60, False, 0),)
    # Every command's first step (memagent.bootstrap.catch_up) leaves it: the table's graph serves the
    # namespace meanwhile, and the command does not wait for a build.
    assert maintenance.repair() is False and definition(db, "big") is None
    assert len(memory.recall("jazz piano", k=5, mode="vector")) == 5
    heard: list[str] = []
    assert maintenance.add_graph("big", heard.append) is True  # recorded, but missing: built
    assert heard == ["Building a graph for namespace 'big'…"] and definition(db, "big") is not None


def building(db: Database, seconds: float = 20.0) -> int:
    """The pid of a CREATE INDEX on memories under way (waiting, or building), once there is one."""
    deadline = time.monotonic() + seconds
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            pid = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_progress_create_index"
                    " WHERE relid = 'memories'::regclass AND command = 'CREATE INDEX CONCURRENTLY'"
                )
            ).scalar_one_or_none()
            if pid is not None:
                return int(pid)
            conn.rollback()
            time.sleep(0.02)
    raise AssertionError("no concurrent index build came")


@contextmanager
def old_snapshot(db: Database) -> Iterator[Connection]:
    """A transaction holding a snapshot: a concurrent index build waits for it to end before it is done."""
    with db.engine.connect() as conn:
        conn.execute(text("BEGIN ISOLATION LEVEL REPEATABLE READ"))
        conn.execute(text("SELECT count(*) FROM memories"))
        yield conn


def test_memories_are_stored_while_a_namespace_graph_builds(db: Database, memory: MemoryService) -> None:
    """The graph is built with CREATE INDEX CONCURRENTLY: a store does not wait for it (a build in the
    unit of work's transaction, as a rebuild does, holds writes until it commits)."""
    result: dict[str, object] = {}
    with old_snapshot(db) as holder:
        builder = threading.Thread(
            target=lambda: result.update(added=IndexMaintenance(memory).add_graph("big"))
        )
        builder.start()
        building(db)  # the build is under way, waiting for the old snapshot to end
        stored = memory.remember("stored while the namespace's graph was building")
        assert builder.is_alive()  # the store did not wait for the build
        holder.execute(text("COMMIT"))
    builder.join(timeout=60)
    assert result == {"added": True}
    (graph,) = IndexMaintenance(memory).status().graphs
    assert graph.present and graph.rows == 61
    memory.indexing.settle()
    vector, side = plans(db, memory, "jazz piano")
    assert namespace_graphs.index_name("big") in vector and namespace_graphs.index_name("big") in side
    hits = memory.recall("stored while the namespace's graph was building", k=1, mode="vector")
    assert hits[0].id == stored.id


def test_an_interrupted_graph_build_leaves_no_invalid_index_and_is_built_again(
    db: Database, memory: MemoryService
) -> None:
    error = interrupted_build(db, memory, "pg_cancel_backend")
    assert isinstance(error, MemagentError) and "\n" not in str(error)
    assert definition(db, "big") is None  # the invalid index the cancelled build left is dropped
    assert IndexMaintenance(memory).status().graphs == (GraphStatus("big", 60, False, 0),)
    assert IndexMaintenance(memory).add_graph("big") is True  # asked again, built
    (graph,) = IndexMaintenance(memory).status().graphs
    assert graph.present and definition(db, "big") is not None


def interrupted_build(db: Database, memory: MemoryService, how: str) -> BaseException:
    """add_graph's concurrent build, its backend cancelled or terminated (`how`) while it waits for an old
    snapshot; the error it raised."""
    errors: list[BaseException] = []

    def add() -> None:
        try:
            IndexMaintenance(memory).add_graph("big")
        except BaseException as exc:
            errors.append(exc)

    with old_snapshot(db) as holder:
        builder = threading.Thread(target=add)
        builder.start()
        pid = building(db)
        with db.engine.connect() as conn:
            assert conn.execute(text(f"SELECT {how}(:pid)"), {"pid": pid}).scalar_one()
        holder.execute(text("COMMIT"))  # (dropping what the build left waits for it too)
        builder.join(timeout=60)
    (error,) = errors
    return error


def killed_build(db: Database, memory: MemoryService) -> BaseException:
    """A concurrent build whose connection is terminated mid-way: the invalid index it leaves stays."""
    error = interrupted_build(db, memory, "pg_terminate_backend")
    with db.engine.connect() as conn:
        valid = conn.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": namespace_graphs.index_name("big")},
        ).scalar_one()
    assert valid is False  # left behind, invalid: the planner never uses it
    return error


def test_a_graph_whose_build_was_killed_is_built_again(db: Database, memory: MemoryService) -> None:
    error = killed_build(db, memory)
    assert isinstance(error, MemagentError) and "\n" not in str(error)
    assert IndexMaintenance(memory).status().graphs == (GraphStatus("big", 60, False, 0),)
    assert IndexMaintenance(memory).repair() is False  # (left to memagent index)
    assert IndexMaintenance(memory).add_graph("big") is True  # the leftover dropped, the graph built
    (graph,) = IndexMaintenance(memory).status().graphs
    assert graph.present
    vector, _ = plans(db, memory, "jazz piano")
    assert namespace_graphs.index_name("big") in vector

    # Left again, then a bulk load builds the graphs in its own transaction: the leftover is renamed out of
    # the way and dropped after the build, nothing set aside remains.
    IndexMaintenance(memory).drop_graph("big")
    killed_build(db, memory)
    with IndexMaintenance(memory).bulk_load(lambda _: 100, min_rows=10) as without:
        assert without is True
        memory.remember_many([f"bulk memory {i} about tide pools" for i in range(40)])
    (graph,) = IndexMaintenance(memory).status().graphs
    assert graph.present and graph.rows == 100
    with db.engine.connect() as conn:
        names = conn.execute(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%old%'")).all()
    assert names == []


def test_a_build_finds_its_namespace_dropped_meanwhile_and_builds_nothing(
    db: Database, memory: MemoryService
) -> None:
    """add_graph records the namespace, commits, then builds under the maintenance lock: a drop that came
    between leaves nothing to build (no graph outside the record)."""
    from memagent.store.hnsw import INDEX_LOCK_KEY, create_sql

    def table_sql(kind: str) -> str:
        return create_sql("vector", DIM, name=namespace_graphs.index_name("big"))

    settings = {"maintenance_work_mem": "64MB"}
    assert namespace_graphs.build_concurrently(db.engine, table_sql, "big", settings, INDEX_LOCK_KEY)
    assert definition(db, "big") is None  # never recorded: nothing built
    with db.engine.connect() as holder:
        assert holder.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": INDEX_LOCK_KEY}).scalar_one()
        assert not namespace_graphs.build_concurrently(db.engine, table_sql, "big", settings, INDEX_LOCK_KEY)
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": INDEX_LOCK_KEY})
        holder.commit()
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO namespace_graphs (namespace) VALUES ('big')"))
    assert namespace_graphs.build_concurrently(db.engine, table_sql, "big", settings, INDEX_LOCK_KEY)
    assert definition(db, "big") is not None
    with db.engine.connect() as conn:  # the pooled connection gave back clean
        assert (
            conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar_one() == 0
        )
        assert conn.execute(text("SELECT current_setting('maintenance_work_mem')")).scalar_one() != "64MB"


def test_a_graph_that_cannot_be_built_says_why(
    db: Database, memory: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memagent.store.hnsw import IndexRepository

    maintenance = IndexMaintenance(memory)
    monkeypatch.setattr(
        IndexRepository, "build_settings", lambda self, ns=None: {"maintenance_work_mem": "1kB"}
    )
    with pytest.raises(MemagentError, match="maintenance_work_mem") as raised:
        maintenance.add_graph("big")
    assert "\n" not in str(raised.value)
    assert maintenance.status().graphs == (GraphStatus("big", 60, False, 0),)  # recorded, not built
    monkeypatch.undo()
    assert maintenance.add_graph("big") is True
    assert maintenance.status().graphs[0].present


def test_a_graph_that_fails_in_a_repair_leaves_the_tables_index_built(
    db: Database, memory: MemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repair every command runs first, after a killed import: a namespace's graph that cannot be built
    is left out under a savepoint; the table's index is built and the command goes on."""
    from memagent.store.hnsw import IndexRepository

    maintenance = IndexMaintenance(memory)
    maintenance.add_graph("big")
    with db.sessions.begin() as session:
        IndexRepository(session).drop()  # as a killed bulk load leaves it
    shipped = IndexRepository.build_settings

    def failing(self: IndexRepository, namespace: str | None = None) -> dict[str, str]:
        return {"maintenance_work_mem": "1kB"} if namespace else shipped(self, namespace)

    monkeypatch.setattr(IndexRepository, "build_settings", failing)
    assert maintenance.repair() is True
    status = maintenance.status()
    assert status.present and status.graphs == (GraphStatus("big", 60, False, 0),)
    assert len(memory.recall("jazz piano", k=5, mode="vector")) == 5
    monkeypatch.undo()
    assert maintenance.add_graph("big") is True and maintenance.status().graphs[0].present
