"""Prepared statements on the one-statement path (UnitOfWork.run(prepare=True), memagent.store.prepared):
the rows the statement's text gives, under row-level security, and a fall back to text where a server
connection does not keep them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
import psycopg2.extensions
import pytest
from sqlalchemy import event, text

from memagent.errors import DatabaseError
from memagent.store import prepared as prepared_module
from memagent.store.database import Database
from memagent.store.prepared import KEPT, KEYED, Preparing, prepared
from memagent.store.search import driver_sql
from memagent.usecases.service import MemoryService
from tests.conftest import bee_keepers, pooled_connections, prepared_statements

# A statement with what a prepared form must carry over: a literal % (escaped for psycopg2), a parameter used
# twice, a NULL, an array, a float; its rows are whatever row-level security lets the namespace see.
STATEMENT = """
SELECT m.id, m.content, CAST(:weight AS float8) * m.id AS weighted
FROM memories m
WHERE m.content LIKE :word || '%' AND (m.content LIKE :word || '%' OR CAST(:never AS text) = '')
  AND m.id <> ALL (CAST(:skip AS bigint[])) AND (CAST(:never AS text) IS NULL OR m.content = :never)
ORDER BY m.id
"""


def run(service: MemoryService, namespace: str, prepare: bool, skip: str = "{}") -> list[Any]:
    """STATEMENT's rows; prepared, always from one kept plan (PostgreSQL's own choice between a kept and a
    fresh plan depends on the table's statistics: the benchmarks measure it, docs/benchmarks.md)."""
    params = {"word": "tide", "never": None, "skip": skip, "weight": 0.5}
    settings = (("work_mem", "8MB"),) + ((("plan_cache_mode", "force_generic_plan"),) if prepare else ())
    return service.unit.run(namespace, STATEMENT, params, settings, prepare=prepare)


@pytest.fixture
def two_namespaces(
    engine_service: tuple[MemoryService, Database, str],
) -> Iterator[tuple[MemoryService, Database, str, str]]:
    service, db, namespace = engine_service
    other = namespace.replace("fast-", "fast-other-")
    service.remember("tide tables for the harbour")
    service.remember("tide at noon, 50% higher")
    service.remember("the ferry leaves at six")
    service.remember("tide pools in the other namespace", namespace=other)
    service.indexing.settle()  # (its steps into the graph over: they hold connections of the pool meanwhile)
    yield service, db, namespace, other


def prepared_here(db: Database) -> dict[int, tuple[int, int]]:
    """On every connection the pool holds (backend pid): (generic plans, custom plans) of STATEMENT."""
    name = prepared(driver_sql(STATEMENT)).name
    return {
        pid: (generic, custom) for pid, kept, _, generic, custom in prepared_statements(db) if kept == name
    }


def test_a_prepared_statement_returns_what_its_text_returns(
    two_namespaces: tuple[MemoryService, Database, str, str],
) -> None:
    """The same rows as the text, call after call, from one kept plan, and in another namespace the other
    namespace's rows only: row-level security holds in a kept plan."""
    service, db, namespace, other = two_namespaces
    expected = run(service, namespace, prepare=False)
    assert [row[1] for row in expected] == ["tide tables for the harbour", "tide at noon, 50% higher"]
    for _ in range(30):
        assert run(service, namespace, prepare=True) == expected
    plans = prepared_here(db)
    assert plans and sum(generic for generic, _ in plans.values()) >= 30, plans
    assert [row[1] for row in run(service, other, prepare=True)] == ["tide pools in the other namespace"]
    skipped = run(service, namespace, prepare=True, skip=f"{{{expected[0][0]}}}")
    assert skipped == expected[1:]
    assert Preparing(db.engine, {}).on


def test_a_statement_deallocated_behind_its_back_is_prepared_again(
    two_namespaces: tuple[MemoryService, Database, str, str],
) -> None:
    """DISCARD ALL (a session pooler's reset) drops a connection's prepared statements without the pool
    knowing: the statement is prepared again on that connection, and prepared statements stay on, however
    many the connection held (a store's, a vector and a hybrid recall's beside this one): one reset, one
    loss."""
    service, db, namespace, _ = two_namespaces
    expected = run(service, namespace, prepare=False)
    for _ in range(10):
        assert run(service, namespace, prepare=True) == expected
        service.remember("the ferry is late today")
        service.recall("the ferry", k=2, mode="vector")
        service.recall("the ferry", k=2, mode="hybrid")
    service.indexing.settle()
    assert prepared_here(db)
    assert max(Counter(pid for pid, *_ in prepared_statements(db)).values()) >= 3
    for connection in pooled_connections(db):
        driver: Any = connection.driver_connection
        driver.autocommit = True
        with driver.cursor() as cursor:
            cursor.execute("DISCARD ALL")
        driver.autocommit = False
        connection.close()
    assert not prepared_here(db)
    assert service.recall("the ferry", k=3, mode="vector")  # a statement new since the reset, made first
    for _ in range(10):
        assert run(service, namespace, prepare=True) == expected
        assert service.remember("the ferry is late today").created is False
        assert service.recall("the ferry", k=2, mode="vector")
        assert service.recall("the ferry", k=2, mode="hybrid")
    assert prepared_here(db)
    assert Preparing(db.engine, {}).on
    # What each connection holds is what the pool records (none left on the server that it cannot evict).
    held = pooled_connections(db)
    try:
        for connection in held:
            preparing = Preparing(db.engine, connection.info)
            with connection.driver_connection.cursor() as cursor:
                cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'memagent%'")
                on_server = {row[0] for row in cursor.fetchall()}
            assert on_server == {name for name in on_server if preparing.has(name)}
            connection.driver_connection.rollback()
    finally:
        for connection in held:
            connection.close()


class ForgetfulCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
    """Each query string reaches a server connection that never saw an earlier PREPARE (a transaction-mode
    pooler)."""

    sent: ClassVar[list[str]] = []

    def execute(self, query: Any, vars: Any = None) -> Any:
        text = query.decode() if isinstance(query, bytes) else str(query)
        ForgetfulCursor.sent.append(text)
        super().execute("DEALLOCATE ALL")
        return super().execute(query, vars)


def test_a_pooler_that_does_not_keep_them_turns_them_off(
    two_namespaces: tuple[MemoryService, Database, str, str],
) -> None:
    """Prepared with its first run (one query string: it works), then not found, prepared again, then not
    found again on the same connection: statements go as text from then on, with the same rows."""
    service, db, namespace, _ = two_namespaces
    expected = run(service, namespace, prepare=False)
    db.engine.dispose()  # (one thread: from now on the pool holds one connection, made with the cursor)
    forgetful = lambda dbapi, _record: setattr(dbapi, "cursor_factory", ForgetfulCursor)  # noqa: E731
    event.listen(db.engine, "connect", forgetful)
    ForgetfulCursor.sent.clear()
    for _ in range(3):
        assert run(service, namespace, prepare=True) == expected
    assert not Preparing(db.engine, {}).on
    assert sum("PREPARE memagent_" in text for text in ForgetfulCursor.sent) == 2
    assert sum("EXECUTE memagent_" in text for text in ForgetfulCursor.sent) == 4  # 2 with their PREPARE
    ForgetfulCursor.sent.clear()
    for _ in range(3):
        assert run(service, namespace, prepare=True) == expected
    assert len(ForgetfulCursor.sent) == 3
    assert not any(verb in text for text in ForgetfulCursor.sent for verb in ("PREPARE ", "EXECUTE "))


def test_a_statement_that_cannot_be_prepared_goes_as_text(
    two_namespaces: tuple[MemoryService, Database, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parameter whose type only its value gives (here compared with nothing) cannot be prepared, and
    something between memagent and PostgreSQL may refuse PREPARE: the statement goes as text, the same rows,
    from then on; prepared statements stay on for the others. A statement without parameters goes prepared."""
    service, db, namespace, _ = two_namespaces
    untyped = "SELECT count(*) FROM memories WHERE :anything IS NULL"
    for _ in range(3):
        assert service.unit.run(namespace, untyped, {"anything": None}, prepare=True) == [(3,)]
    assert Preparing(db.engine, {}).refuses(prepared(driver_sql(untyped)).name)
    bare = "SELECT count(*) FROM memories -- a statement may end in a comment"
    for _ in range(3):
        assert service.unit.run(namespace, bare, {}, prepare=True) == [(3,)]
    assert any(row[1] == prepared(driver_sql(bare)).name for row in prepared_statements(db))

    refused = "-- refused by a proxy" + STATEMENT
    sent: list[str] = []

    class Refusing(psycopg2.extensions.cursor):  # type: ignore[misc]
        def execute(self, query: Any, vars: Any = None) -> Any:
            text = query.decode() if isinstance(query, bytes) else str(query)
            sent.append(text)
            if "PREPARE " in text:
                super().execute("SELECT pg_catalog.nothing_of_the_kind()")  # refused: 42883
            return super().execute(query, vars)

    db.engine.dispose()
    event.listen(db.engine, "connect", lambda dbapi, _record: setattr(dbapi, "cursor_factory", Refusing))
    params = {"word": "tide", "never": None, "skip": "{}", "weight": 0.5}
    expected = service.unit.run(namespace, refused, params)
    for _ in range(3):
        assert service.unit.run(namespace, refused, params, prepare=True) == expected
    assert sum("PREPARE " in text for text in sent) == 1  # refused once; text from then on
    assert Preparing(db.engine, {}).on
    assert run(service, namespace, prepare=True) == run(service, namespace, prepare=False)


def test_a_connection_keeps_a_bounded_number_of_prepared_statements(
    two_namespaces: tuple[MemoryService, Database, str, str],
) -> None:
    """Each prepared statement holds its plans in the server's memory: a connection keeps the KEPT most
    recently used, deallocating the others, and every statement still gives its rows."""
    service, db, namespace, _ = two_namespaces
    db.engine.dispose()  # one thread: one connection from now on
    statements = [f"SELECT count(*) + {i} FROM memories WHERE id > CAST(:least AS bigint)" for i in range(20)]
    for _ in range(2):
        for i, statement in enumerate(statements):
            assert service.unit.run(namespace, statement, {"least": 0}, prepare=True) == [(3 + i,)]
    names = {row[1] for row in prepared_statements(db)}
    assert names == {prepared(driver_sql(statement)).name for statement in statements[-KEPT:]}


def test_a_table_altered_under_a_prepared_statement(
    two_namespaces: tuple[MemoryService, Database, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column retyped after the statement was prepared (a later revision, applied while this process runs):
    PostgreSQL refuses the old prepared statement ("cached plan must not change result type", here as if in
    another language); it is prepared anew and gives the new rows. A privilege revoked meanwhile is checked
    when the statement runs: its error is raised, once revoked, and the statement is prepared again after."""
    monkeypatch.setattr(prepared_module, "_RETYPED", "gecachter Plan darf den Ergebnistyp nicht ändern")
    service, db, namespace, _ = two_namespaces
    probe = "SELECT x FROM memagent_prepared_probe WHERE x > CAST(:least AS int) ORDER BY x"
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE memagent_prepared_probe (x int)"))
        conn.execute(text("INSERT INTO memagent_prepared_probe VALUES (1), (2), (3)"))
        conn.execute(text("GRANT SELECT ON memagent_prepared_probe TO memagent_app"))
    try:
        for _ in range(8):
            assert service.unit.run(namespace, probe, {"least": 1}, prepare=True) == [(2,), (3,)]
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE memagent_prepared_probe ALTER x TYPE bigint"))
            conn.execute(text("INSERT INTO memagent_prepared_probe VALUES (10000000000)"))
        for _ in range(8):
            assert service.unit.run(namespace, probe, {"least": 1}, prepare=True) == [(2,), (3,), (10**10,)]
        assert Preparing(db.engine, {}).on
        fresh = "SELECT count(*) FROM memagent_prepared_probe WHERE x > CAST(:least AS bigint)"
        with db.engine.begin() as conn:
            conn.execute(text("REVOKE SELECT ON memagent_prepared_probe FROM memagent_app"))
        with pytest.raises(DatabaseError, match="permission denied"):
            service.unit.run(namespace, fresh, {"least": 1}, prepare=True)
        with db.engine.begin() as conn:
            conn.execute(text("GRANT SELECT ON memagent_prepared_probe TO memagent_app"))
        assert service.unit.run(namespace, fresh, {"least": 1}, prepare=True) == [(3,)]
        assert not Preparing(db.engine, {}).refuses(prepared(driver_sql(fresh)).name)
        assert any(row[1] == prepared(driver_sql(fresh)).name for row in prepared_statements(db))
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE memagent_prepared_probe"))


def test_a_run_that_fails_fails_as_the_text_would(
    two_namespaces: tuple[MemoryService, Database, str, str],
) -> None:
    """An error of the run itself (not of PREPARE) is the caller's one-line error, the first time and later,
    not a second run as text; the statement stays prepared for the calls that succeed."""
    service, db, namespace, _ = two_namespaces
    divide = "SELECT count(*) / CAST(:by AS int) FROM memories"
    for _ in range(2):
        with pytest.raises(DatabaseError, match="division by zero"):
            service.unit.run(namespace, divide, {"by": 0}, prepare=True)
        assert service.unit.run(namespace, divide, {"by": 1}, prepare=True) == [(3,)]
    assert not Preparing(db.engine, {}).refuses(prepared(driver_sql(divide)).name)
    assert any(row[1] == prepared(driver_sql(divide)).name for row in prepared_statements(db))


def test_a_vector_ranking_of_a_namespace_goes_prepared_with_its_namespace_written_in(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    """Vector recall of a whole namespace (and hybrid's vector side) goes prepared, the namespace and k
    written in, so that PostgreSQL can keep one plan for it: the rows the text form gives, call after call.
    A namespace that would need quoting, and a recall of one session, go as text."""
    service, db, namespace = engine_service
    odd = "o'brien's 100% notes"
    for word in ("harbour", "ferry", "lighthouse", "tide", "gull", "pier", "buoy", "dune"):
        service.remember(f"a note about the {word}")
        service.remember(f"a note about the {word}", namespace=odd)
    service.indexing.settle()
    with prepared_module.as_text(db.engine):
        expected = service.recall("the harbour at noon", k=3, mode="vector")
        expected_odd = service.recall("the harbour at noon", k=3, mode="vector", namespace=odd)
        expected_hybrid = service.recall("the harbour at noon", k=3, mode="hybrid")
    for _ in range(8):  # past the five custom plans PostgreSQL makes before it may keep one
        assert service.recall("the harbour at noon", k=3, mode="vector") == expected
        assert service.recall("the harbour at noon", k=3, mode="vector", namespace=odd) == expected_odd
        assert service.recall("the harbour at noon", k=3, mode="hybrid") == expected_hybrid
        service.recall("the harbour at noon", k=3, mode="vector", session_id="elsewhere")
    # The same memories in both namespaces: the same distances (the notes after the first tie with one another
    # under the tests' embedder, so which of them the index gives in the last places is its own choice).
    assert expected and expected[0].content == expected_odd[0].content == "a note about the harbour"
    assert [round(m.distance or 0, 6) for m in expected_odd] == [round(m.distance or 0, 6) for m in expected]
    kept = [row for row in prepared_statements(db) if "nearest_index" in row[2]]
    literal = f"'{namespace}'"
    vector = [row for row in kept if literal in row[2] and "LIMIT 3" in row[2]]
    assert vector, kept  # (hybrid's vector side, LIMIT 50, only when its text side is not done first)
    assert sum(generic + custom for _, _, _, generic, custom in vector) >= 8
    assert not [row for row in kept if "brien" in row[2] or "m.session_id = " in row[2]]


def test_a_namespace_that_names_a_parameter_is_written_in_as_it_is(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    """A namespace written into its statement is written once: "team:k" stays "team:k" (k and depth are
    written in too), never "team5", whose memories it must not see, nor miss its own."""
    service, _, namespace = engine_service
    for own, others in (("team:k", ("team5", "team50")), ("crew:depth", ("crew50", "crew5"))):
        service.remember(f"the lighthouse of {own} is red", namespace=own)
        for other in others:
            service.remember(f"the lighthouse of {other} is blue", namespace=other)
        service.indexing.settle()
        for mode in ("vector", "hybrid"):
            for _ in range(2):
                found = service.recall("the lighthouse", k=5, mode=mode, namespace=own)
                assert [m.content for m in found] == [f"the lighthouse of {own} is red"], (own, mode)
    assert namespace  # (the fixture's own namespace is left alone)


def test_a_connection_keeps_a_few_namespaces_statements_and_sends_the_rest_as_text(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    """A service rotating over more namespaces than a connection keeps statements for: the first KEYED on
    each connection go prepared, the others as text — no statement is deallocated to make room for one, and
    hybrid's fusion keeps its place."""
    service, db, _ = engine_service
    names = bee_keepers(service, "tenant-", KEYED + 4)
    deallocated: list[str] = []
    calls = 0
    original = prepared_module._deallocate

    def counting(cursor: Any, name: str) -> bool:
        deallocated.append(name)
        return original(cursor, name)

    prepared_module._deallocate = counting
    try:
        for _ in range(3):
            for name in names:
                for mode in ("vector", "hybrid"):
                    found = service.recall("who keeps bees?", k=2, mode=mode, namespace=name)
                    assert [m.content for m in found] == [f"the tenant {name} keeps bees"]
                    calls += 1
    finally:
        prepared_module._deallocate = original
    assert calls == 3 * 2 * len(names) and deallocated == []
    kept = prepared_statements(db)
    per_connection: dict[int, int] = {}
    for pid, _, statement, _, _ in kept:
        if "nearest_index" in statement and "tenant-" in statement:
            per_connection[pid] = per_connection.get(pid, 0) + 1
    assert per_connection and max(per_connection.values()) <= KEYED
    # (the fusion alone: both sides' rows given, no vector side of its own)
    assert any("AS v(id, distance)" in statement for _, _, statement, _, _ in kept)


def test_a_store_goes_prepared_and_stores_what_its_text_stores(
    engine_service: tuple[MemoryService, Database, str], engine: Any
) -> None:
    """Storing one memory (a chat turn's, `remember`'s) goes prepared: past the custom plans PostgreSQL makes
    first, the row is the one the statement's text stores (every column typed by the statement), identical
    text is still stored once, and the pool keeps the statement."""
    service, db, namespace = engine_service
    when = datetime(2024, 2, 29, 23, 30, tzinfo=UTC)
    meta = {"source": "test", "nested": {"n": 1.5, "list": [1, "two"]}}
    stored = [
        service.remember(f"the tide at {hour} o'clock", session_id="s1", metadata=meta, created_at=when)
        for hour in range(8)
    ]
    again = service.remember("the tide at 3 o'clock", session_id="s1", metadata=meta, created_at=when)
    with prepared_module.as_text(db.engine):
        as_text = service.remember("the tide at 9 o'clock", session_id="s1", metadata=meta, created_at=when)
    assert all(r.created for r in stored) and as_text.created
    assert not again.created and again.id == stored[3].id
    service.indexing.settle()  # (each into the HNSW graph after its store: `indexed` alike)
    columns = (
        "namespace, session_id, embedding_model, metadata, created_at, kind, importance, indexed,"
        " embedding IS NOT NULL, vector_dims(embedding), content_tsv IS NOT NULL"
    )
    with engine.connect() as conn:
        rows = {
            row[0]: row[1:]
            for row in conn.execute(
                text(f"SELECT id, {columns} FROM memories WHERE id = ANY (:ids)"),
                {"ids": [r.id for r in [*stored, as_text]]},
            )
        }
        vectors = dict(
            conn.execute(
                text("SELECT content, CAST(embedding AS text) FROM memories WHERE id = ANY (:ids)"),
                {"ids": [stored[-1].id, as_text.id]},
            ).all()
        )
    assert len(rows) == 9
    assert [row for row in rows.values() if row != rows[as_text.id]] == []  # as the text stores it
    for content, stored_vector in vectors.items():  # the embedder's float32 values, exactly
        given = np.asarray(service.embedder.embed([content])[0], dtype=np.float32)
        assert np.array_equal(np.asarray(json.loads(stored_vector), dtype=np.float32), given)
    assert rows[as_text.id][:5] == (namespace, "s1", service.embedder.model, meta, when)
    kept = [row for row in prepared_statements(db) if "INSERT INTO memories" in row[2]]
    assert kept and sum(generic + custom for _, _, _, generic, custom in kept) >= 8
