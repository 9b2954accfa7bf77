"""MemoryRepository against the real schema: writes, reads, filters, and the scoped-recall guarantee."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.orm import Session

from memagent.store import hnsw
from memagent.store.memories import MemoryRepository, NewMemory, content_hash
from memagent.store.models import MemoryRow
from memagent.store.scope import Scope, View
from memagent.store.search import SearchMode
from memagent.store.space import SpaceRepository
from memagent.store.vector_format import vector_text
from tests.conftest import DIM, explain, sent_statements

pytestmark = pytest.mark.both_drivers


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def new(
    content: str, vector: np.ndarray, namespace: str = "ns", session_id: str = "s1", **kw: object
) -> NewMemory:
    return NewMemory(
        namespace=namespace,
        session_id=session_id,
        content=content,
        embedding=vector,
        embedding_model="fake-embed-384",
        metadata=dict(kw.pop("metadata", {})),  # type: ignore[call-overload]
        created_at=kw.pop("created_at", None),  # type: ignore[arg-type]
    )


@pytest.fixture
def repo(sessions: Callable[[], Session]) -> MemoryRepository:
    return MemoryRepository(sessions())


def test_add_stores_row_and_identical_content_once_per_namespace(repo: MemoryRepository) -> None:
    first_id, created = repo.add(new("hello", unit(1), metadata={"source": "test"}))
    again_id, created_again = repo.add(new("hello", unit(2), session_id="s2"))
    other_ns_id, created_other = repo.add(new("hello", unit(1), namespace="other"))

    assert created and not created_again and created_other
    assert again_id == first_id != other_ns_id
    assert repo.count(Scope("ns")) == 1
    row = repo.session.execute(
        text("SELECT content_hash, metadata FROM memories WHERE id = :id"), {"id": first_id}
    )
    stored_hash, metadata = row.one()
    assert stored_hash == content_hash("hello")
    assert metadata == {"source": "test"}


def test_search_orders_by_cosine_distance_and_respects_scope(repo: MemoryRepository) -> None:
    query = unit(10)
    near = query + 0.1 * unit(11)
    far = unit(12)
    repo.add(new("far", far))
    repo.add(new("near", near / np.linalg.norm(near)))
    repo.add(new("other session", query, session_id="s2"))
    repo.add(new("other namespace", query, namespace="elsewhere"))

    found = repo.search(query, scope=Scope("ns"), k=5)
    assert [m.content for m in found] == ["other session", "near", "far"]
    assert found[0].distance == pytest.approx(0.0, abs=1e-5)
    assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
    distances = [m.distance for m in found]
    assert None not in distances and distances == sorted(distances)  # type: ignore[type-var]

    in_session = repo.search(query, scope=Scope("ns", session_id="s1"), k=5)
    assert [m.content for m in in_session] == ["near", "far"]


def test_max_distance_filters_after_the_nearest_k(repo: MemoryRepository) -> None:
    query = unit(20)
    repo.add(new("same", query))
    repo.add(new("unrelated", unit(21)))
    found = repo.search(query, scope=Scope("ns"), k=5, max_distance=0.5)
    assert [m.content for m in found] == ["same"]


def test_recent_count_and_purge_by_session_and_date(repo: MemoryRepository) -> None:
    now = datetime.now(UTC)
    repo.add(new("old", unit(30), created_at=now - timedelta(days=10)))
    repo.add(new("mid", unit(31), created_at=now - timedelta(days=5), session_id="s2"))
    repo.add(new("new", unit(32), created_at=now))

    assert [m.content for m in repo.recent(Scope("ns"), limit=2)] == ["new", "mid"]
    assert repo.count(Scope("ns", before=now - timedelta(days=1))) == 2

    assert repo.purge(Scope("ns", session_id="s2")) == 1
    assert repo.purge(Scope("ns", before=now - timedelta(days=7))) == 1
    assert [m.content for m in repo.recent(Scope("ns"), limit=10)] == ["new"]
    remaining = repo.session.execute(
        text("SELECT count(*) FROM memories WHERE namespace = 'ns'")
    ).scalar_one()
    assert remaining == 1


def test_embedding_space_first_writer_wins(repo: MemoryRepository) -> None:
    repo.session.execute(text("DELETE FROM embedding_space"))
    space = SpaceRepository(repo.session)
    assert space.get() is None
    assert space.column_dimension() == DIM
    assert space.claim("model-a", DIM) == ("model-a", DIM)
    assert space.claim("model-b", 99) == ("model-a", DIM)


def _clustered(count: int, seed: int) -> np.ndarray:
    """Vectors around a few centres, like real embeddings (uniform noise would make HNSW meaningless)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, DIM))
    points = centres[rng.integers(0, 8, size=count)] + 0.35 * rng.normal(size=(count, DIM))
    normalised: np.ndarray = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    return normalised


def _load(connection: Connection, vectors: np.ndarray, namespace: str, *, every: int) -> None:
    """One memory per vector ("memory i"): every `every`-th in `namespace`, the rest in "crowd"."""
    rows = [
        {
            "namespace": namespace if i % every == 0 else "crowd",
            "session_id": "s",
            "content": f"memory {i}",
            "embedding": vector,
            "embedding_model": "fake-embed-384",
            "content_hash": content_hash(f"memory {i}"),
        }
        for i, vector in enumerate(vectors)
    ]
    connection.execute(insert(MemoryRow), rows)


def _index_only(connection: Connection, namespace: str, query: np.ndarray, k: int) -> list[Any]:
    """The ids a plain filtered `ORDER BY embedding <=> q LIMIT k` gives under the connection's settings."""
    return list(
        connection.execute(
            text(
                "SELECT id FROM memories WHERE namespace = :ns AND indexed "
                "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :k"
            ),
            {"ns": namespace, "q": str(query.tolist()), "k": k},
        ).all()
    )


def test_scoped_recall_returns_k_rows_through_the_hnsw_index(
    connection: Connection, repo: MemoryRepository
) -> None:
    """A namespace holding 1% of 3,000 rows still gets k rows: the fix is the iterative index scan."""
    total, k = 3000, 10
    vectors = _clustered(total, seed=7)
    _load(connection, vectors, "scoped", every=100)
    query = vectors[1] + 0.05 * _clustered(1, seed=8)[0]

    # Make the planner take the HNSW index, as it does on a large table.
    connection.execute(text("SET LOCAL enable_seqscan = off"))
    connection.execute(text("SET LOCAL enable_sort = off"))

    # Without the fix: a plain filtered ANN query over the default 40-candidate scan comes up short.
    connection.execute(text("SET LOCAL hnsw.iterative_scan = off"))
    connection.execute(text("SET LOCAL hnsw.ef_search = 40"))
    naive = _index_only(connection, "scoped", query, k)
    assert len(naive) < k

    with sent_statements(connection) as sent:
        found = repo.search(query, scope=Scope("scoped"), k=k)
        hybrid = repo.search(query, scope=Scope("scoped"), k=k, mode="hybrid", query_text="memory 1")
    assert len(found) == k and len(hybrid) == k
    assert all(m.namespace == "scoped" for m in found)
    # The statements the repository really sent are served by the HNSW index.
    vector_plan = explain(connection, sent, "<=>", "ORDER BY distance, id")
    hybrid_plan = explain(connection, sent, "<=>", "fused AS MATERIALIZED")
    assert hnsw.INDEX_NAME in vector_plan and hnsw.INDEX_NAME in hybrid_plan
    # The iterative scan returns rows in relaxed order: ranks come from a real sort of what it found, never
    # from an incremental sort that takes the index's order as given (pgvector: a materialized CTE).
    assert "Presorted Key" not in vector_plan and "Presorted Key" not in hybrid_plan
    scoped_ids = np.arange(0, total, 100)
    exact = scoped_ids[np.argsort(1 - vectors[scoped_ids] @ query)[:k]]
    assert len({int(m.content.split()[1]) for m in found} & set(exact.tolist())) >= k - 1


def test_an_index_scan_that_gives_up_is_completed_exactly(
    connection: Connection, repo: MemoryRepository
) -> None:
    """A scope that is a sliver of the table, sent through the HNSW index (stale statistics do that), can
    exhaust the iterative scan's budget (hnsw.max_scan_tuples) before k rows pass its filter: recall then
    ranks the scope exactly, in vector and in hybrid mode; otherwise the exact branch never runs."""
    total, k = 3000, 10
    vectors = _clustered(total, seed=11)
    _load(connection, vectors, "sliver", every=150)
    query = vectors[3] + 0.05 * _clustered(1, seed=12)[0]
    connection.execute(text("SET LOCAL enable_seqscan = off"))
    connection.execute(text("SET LOCAL enable_sort = off"))
    connection.execute(text("SET LOCAL hnsw.max_scan_tuples = 100"))

    # What the index alone gives the sliver under this budget: fewer than k.
    connection.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    given_up = _index_only(connection, "sliver", query, k)
    assert len(given_up) < k

    sliver = np.arange(0, total, 150)
    exact = [f"memory {i}" for i in sliver[np.argsort(1 - vectors[sliver] @ query, kind="stable")[:k]]]
    with sent_statements(connection) as sent:
        found = repo.search(query, scope=Scope("sliver"), k=k)
        hybrid = repo.search(query, scope=Scope("sliver"), k=k, mode="hybrid", query_text="nothing here")
    assert [m.content for m in found] == exact
    assert [m.content for m in hybrid] == exact  # no word matches: the vector side alone orders them
    assert hnsw.INDEX_NAME in explain(connection, sent, "<=>", "ORDER BY distance, id")

    # In the crowd the index finds k at once and the exact ranking (a function: memagent.store.exact) is
    # never called.
    with sent_statements(connection) as sent:
        assert len(repo.search(query, scope=Scope("crowd"), k=k)) == k
    plan = explain(connection, sent, "ORDER BY distance, id", analyze=True)
    calls = [line for line in plan.splitlines() if "Function Scan on memagent_nearest_exact" in line]
    assert calls and all("never executed" in line for line in calls), plan
    assert "Seq Scan on memories" not in plan, plan


def _reads(connection: Connection) -> Counter[str]:
    """How many scans of memories this transaction has started so far: sequential ("seq"), and by index."""
    row = connection.execute(
        text("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'memories'")
    ).one()
    indexes = connection.execute(
        text(
            "SELECT c.relname, pg_stat_get_xact_numscans(c.oid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'memories'::regclass"
        )
    ).all()
    return Counter({"seq": int(row[0]), **{str(name): int(count) for name, count in indexes}})


def _cte(plan: str, name: str) -> str:
    """The subtree of the plan's CTE `name` (EXPLAIN's text form: its lines indented deeper than its own)."""
    lines = plan.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"CTE {name}")
    depth = len(lines[start]) - len(lines[start].lstrip())
    end = next(
        (i for i in range(start + 1, len(lines)) if len(lines[i]) - len(lines[i].lstrip()) <= depth),
        len(lines),
    )
    return "\n".join(lines[start:end])


def test_a_recall_of_one_kind_reads_that_kind_not_the_namespace(
    connection: Connection, repo: MemoryRepository
) -> None:
    """A few facts among thousands of exchanges (learning looks for the nearest facts on every chat turn),
    while another namespace holds thousands of facts: the recall finds them by the kind index (revision
    0022; the statistics of revision 0023 tell the planner how few they are), exactly ranked, and reading
    its scope reads no exchange — neither the index scan nor the exact branch that completes a short one."""
    total, k = 3000, 5
    vectors = _clustered(total, seed=13)
    _load(connection, vectors, "crowd", every=1)
    _load(connection, _clustered(2000, seed=15), "learnt", every=1)
    facts = [3, 700, 1500]
    connection.execute(
        text("UPDATE memories SET kind = 'fact' WHERE content = ANY(:c) OR namespace = 'learnt'"),
        {"c": [f"memory {i}" for i in facts]},
    )
    connection.execute(text("ANALYZE memories"))
    query = vectors[700] + 0.05 * _clustered(1, seed=14)[0]
    expected = [f"memory {i}" for i in sorted(facts, key=lambda i: float(1 - vectors[i] @ query))]

    facts_only = Scope("crowd", view=View(kinds=("fact",)))
    cases: tuple[tuple[SearchMode, str | None], ...] = (("vector", None), ("hybrid", "nothing here"))
    for mode, words in cases:
        before = _reads(connection)
        with sent_statements(connection) as sent:
            found = repo.search(query, scope=facts_only, k=k, mode=mode, query_text=words)
        read = _reads(connection) - before
        assert [m.content for m in found] == expected and {m.kind for m in found} == {"fact"}, mode
        plan = explain(connection, sent, "<=>", analyze=True)
        scope_reads = _cte(plan, "nearest_index")
        assert "ix_memories_kind" in scope_reads, plan
        executed = [line for line in scope_reads.splitlines() if "never executed" not in line]
        assert not [line for line in executed if "Seq Scan on memories" in line], plan
        indexes = {
            word
            for line in executed
            for word in line.split()
            if word.startswith(("ix_memories", "memories_"))
        }
        assert indexes <= {"ix_memories_kind", "memories_pkey"}, plan
        # The index scan came back short (three facts, k five): the exact ranking ran, inside its function
        # (not in the plan), and read the facts by the kind index too, never the namespace's exchanges.
        calls = [line for line in plan.splitlines() if "Function Scan on memagent_nearest_exact" in line]
        assert calls and "never executed" not in calls[0], plan
        assert read["seq"] == 0 and read["ix_memories_kind"] >= 2, read


def test_add_many_keeps_order_and_stores_identical_content_once(repo: MemoryRepository) -> None:
    first_id, _ = repo.add(new("already here", unit(40)))
    results = repo.add_many(
        [
            new("fresh one", unit(41)),
            new("already here", unit(42)),
            new("fresh two", unit(43)),
            new("fresh one", unit(44)),  # a duplicate inside the batch
            new("fresh one", unit(45), namespace="ns2"),
        ]
    )
    created = [c for _, c in results]
    ids = [i for i, _ in results]
    assert created == [True, False, True, False, True]
    assert ids[1] == first_id and ids[3] == ids[0] and len({ids[0], ids[2], ids[4], first_id}) == 4
    assert repo.count(Scope("ns")) == 3 and repo.count(Scope("ns2")) == 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=arrays(np.float32, DIM, elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_vectors_are_stored_and_read_back_bit_for_bit(repo: MemoryRepository, values: np.ndarray) -> None:
    """Vectors travel as text with 9 significant digits: each float32 comes back exactly, extremes too."""
    values[:4] = [np.finfo(np.float32).max, -np.finfo(np.float32).smallest_subnormal, 1e-38, -0.0]
    # Named by all its bytes: an example hypothesis repeats finds its own row again.
    memory_id, _ = repo.add(new(f"exact {hashlib.sha256(values.tobytes()).hexdigest()}", values))
    stored = repo.session.execute(select(MemoryRow.embedding).where(MemoryRow.id == memory_id)).scalar_one()
    assert np.array_equal(np.asarray(stored, dtype=np.float32), values)
    assert vector_text(values).count(",") == DIM - 1


def test_every_float32_exponent_and_rounding_edge_comes_back_bit_for_bit(repo: MemoryRepository) -> None:
    """vector_text writes nine digits and a power of ten by table: each float32 magnitude, the values just
    below a power of ten (whose nine digits round up to ten), subnormals and both zeros read back exactly."""
    f32 = np.float32
    powers = f32(10.0) ** np.arange(-45, 39, dtype=np.float64).astype(f32)
    edges = [
        *np.nextafter(powers, f32(0)),
        *powers,
        *np.nextafter(powers, f32(np.inf)),
        *(f32(2.0) ** np.arange(-149, 128, dtype=np.float64)).astype(f32),
        np.finfo(f32).smallest_subnormal,
        np.finfo(f32).max,
        f32(0.0),
        f32(-0.0),
    ]
    values = np.array([v for v in edges if np.isfinite(v)], dtype=f32)
    values = np.concatenate([values, -values])
    assert vector_text(values[:3]).startswith("[") and vector_text(values[:3]).count(",") == 2
    for start in range(0, len(values), DIM):
        chunk = np.resize(values[start : start + DIM], DIM)
        memory_id, _ = repo.add(new(f"edges {hashlib.sha256(chunk.tobytes()).hexdigest()}", chunk))
        stored = repo.session.execute(
            select(MemoryRow.embedding).where(MemoryRow.id == memory_id)
        ).scalar_one()
        got = np.asarray(stored, dtype=f32)
        assert np.array_equal(got.view(np.uint32), chunk.view(np.uint32))  # -0.0 too


def test_a_vector_that_is_not_finite_is_written_for_pgvector_to_refuse() -> None:
    assert vector_text([1.0, float("nan"), float("inf")]) == "[1,nan,inf]"
    assert vector_text([]) == "[]"
    with pytest.raises(ValueError, match="one-dimensional"):
        vector_text([[1.0]])
