"""Hybrid recall with its text side done before the query is embedded: the vector side and the fusion then
go as one prepared statement, its namespace and depth written in (memagent.store.keyed). It must give what
the one statement gives and what its text form gives, from custom plans and from a kept (generic) one,
whatever the namespace's characters, k against the depth, a distance cut-off, archived memories, memories
waiting for the graph, or a halfvec index; and a service rotating over namespaces must not deallocate
statements for them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text

from memagent.config import Settings
from memagent.store import prepared as prepared_module
from memagent.store.database import Database
from memagent.store.prepared import KEYED
from memagent.usecases.service import MemoryService
from tests.conftest import bee_keepers, fake_embedder, make_database, prepared_statements
from tests.test_hybrid_sides import SlowEmbedder

WORDS = ("ferry", "porto", "pier", "harbour", "timetable", "garden", "orchid", "water", "sunday", "tide")


def recalled(service: MemoryService, query: str, **kw: Any) -> list[tuple[int, float, float | None]]:
    found = service.recall(query, mode="hybrid", **kw)
    return [(m.id, m.score, m.distance) for m in found.memories]


@contextmanager
def text_first(
    service: MemoryService,
    monkeypatch: pytest.MonkeyPatch,
    generic: bool,
    log: list[tuple[str, dict[str, Any]]],
) -> Iterator[None]:
    run, run_aside = service.unit.run, service.unit.run_aside
    sides: list[Future[list[Any]]] = []

    def kept(*args: Any) -> Future[list[Any]] | None:
        inner = run_aside(*args)
        assert inner is not None
        sides.append(inner)
        return inner

    def recording(ns: str, sql: str, params: Any, settings: Any = (), **kw: Any) -> list[Any]:
        if threading.current_thread().name.startswith("memagent-recall"):
            return run(ns, sql, params, settings, **kw)
        log.append((sql, dict(kw)))
        if generic and kw.get("prepare"):
            settings = (*settings, ("plan_cache_mode", "force_generic_plan"))
        return run(ns, sql, params, settings, **kw)

    slow = SlowEmbedder(service.embedder, 0.0, before=lambda: sides[-1].result(timeout=30))
    with monkeypatch.context() as m:
        m.setattr(service.unit, "run", recording)
        m.setattr(service.unit, "run_aside", kept)
        m.setattr(service, "embedder", slow)
        yield


def one_statement(service: MemoryService, monkeypatch: pytest.MonkeyPatch, query: str, **kw: Any) -> Any:
    with monkeypatch.context() as m:
        m.setattr(service.unit, "run_aside", lambda *a, **k: None)
        return recalled(service, query, **kw)


def fill(service: MemoryService, namespace: str, n: int = 70) -> list[int]:
    ids = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(2 + i % 4)]
        ids.append(
            service.remember(
                f"about the {' and the '.join(words)} ({i}) in {namespace}", namespace=namespace
            ).id
        )
    return ids


SHAPES: list[dict[str, Any]] = [
    {"k": 5},
    {"k": 1},
    {"k": 60},  # more than the depth
    {"k": 7, "max_distance": 0.9},
    {"k": 7, "max_distance": 0.5},
    {"k": 7, "include_archived": True},
    {"k": 7, "text_floor": 0.0},
]


def compare_all(
    service: MemoryService,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    namespaces: list[str],
    rounds: int = 7,
) -> list[tuple[str, dict[str, Any]]]:
    log: list[tuple[str, dict[str, Any]]] = []
    mismatches: list[tuple[Any, ...]] = []
    for ns in namespaces:
        for shape in SHAPES:
            for query in ("ferry porto", "orchid water sunday", "lighthouse"):
                alone = one_statement(service, monkeypatch, query, namespace=ns, **shape)
                with prepared_module.as_text(db.engine), text_first(service, monkeypatch, False, []):
                    as_text = recalled(service, query, namespace=ns, **shape)
                if as_text != alone:
                    mismatches.append(("text", ns, shape, query, alone, as_text))
                for generic in (True, False):
                    for _ in range(rounds if not generic else 2):
                        with text_first(service, monkeypatch, generic, log):
                            got = recalled(service, query, namespace=ns, **shape)
                        if got != alone:
                            mismatches.append((generic, ns, shape, query, alone, got))
    assert not mismatches, mismatches[:3]
    return log


def test_with_text_prepared_matches_one_statement_for_odd_namespaces(
    engine_service: tuple[MemoryService, Database, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, db, own = engine_service
    tag = uuid.uuid4().hex[:6]
    names = [f"team:k{tag}", f"crew:depth{tag}", f"a:b:c{tag}", f"x.y@z/w-1{tag}", own]
    # (each a neighbour of what a namespace written in wrongly would read: "team5", "crew50")
    for name in names[:4]:
        fill(service, name)
    service.indexing.settle()
    # archived and expired rows in the first namespace
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE memories SET archived_at = now() WHERE namespace = :ns AND id % 5 = 0"),
            {"ns": names[0]},
        )
    fill(service, own, 55)
    service.indexing.settle()
    log = compare_all(service, db, monkeypatch, names, rounds=7)
    with_text = [(sql, kw) for sql, kw in log if "txt_ids" in sql and "nearest_index" in sql]
    assert with_text and all(kw.get("prepare") and kw.get("keyed") for _, kw in with_text)
    kept = [row[2].split("EXECUTE")[0] for row in prepared_statements(db)]
    kept = [sql for sql in kept if "txt AS MATERIALIZED" in sql and "nearest_index" in sql]
    # (as many as a connection keeps: a namespace's shapes, a cut-off or archived ones, are statements apart)
    assert kept and all(any(f"'{name}'" in sql for name in names) for sql in kept)


def test_with_text_prepared_with_memories_waiting_to_be_indexed(
    engine_service: tuple[MemoryService, Database, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, db, own = engine_service
    fill(service, own, 60)
    service.indexing.settle()
    monkeypatch.setattr(service.indexing, "start", lambda namespace: None)
    for i in range(6):
        service.remember(f"a fresh note about the ferry to porto ({i})", namespace=own)
    with db.engine.connect() as conn:
        waiting = conn.execute(
            text("SELECT count(*) FROM memories WHERE namespace = :ns AND NOT indexed"), {"ns": own}
        ).scalar_one()
    assert waiting >= 1, waiting
    compare_all(service, db, monkeypatch, [own], rounds=7)


def test_with_text_prepared_on_a_halfvec_index(
    embedded: Any, fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memagent.store import schema
    from memagent.usecases.maintenance import IndexMaintenance

    url = make_database(embedded, "memagent_text_first_halfvec")
    with Database(Settings(), url=url) as db:
        schema.upgrade(db, "head", embedding_dim=384)
    with Database(Settings(), url=url) as db:
        service = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace="hv"))
        fill(service, "hv", 70)
        service.indexing.settle()
        IndexMaintenance(service).rebuild("halfvec")
        service.recall("warm", mode="vector")
        log = compare_all(service, db, monkeypatch, ["hv"], rounds=7)
        with_text = [sql for sql, kw in log if "txt_ids" in sql and "nearest_index" in sql]
        assert with_text and all("halfvec" in sql for sql in with_text)


def test_keyed_rotation_in_hybrid_text_first(
    engine_service: tuple[MemoryService, Database, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, db, _ = engine_service
    names = bee_keepers(service, f"tenant{uuid.uuid4().hex[:4]}-", KEYED + 4)
    deallocated: list[str] = []
    original = prepared_module._deallocate

    def counting(cursor: Any, name: str) -> bool:
        deallocated.append(name)
        return original(cursor, name)

    monkeypatch.setattr(prepared_module, "_deallocate", counting)
    log: list[tuple[str, dict[str, Any]]] = []
    for _ in range(3):
        for name in names:
            with text_first(service, monkeypatch, False, log):
                found = service.recall("who keeps bees?", k=2, mode="hybrid", namespace=name)
            assert [m.content for m in found] == [f"the tenant {name} keeps bees"]
            # and one not text-first (vector side alone, then the fusion)
            found = service.recall("who keeps bees?", k=2, mode="hybrid", namespace=name)
    assert deallocated == []
    kept = prepared_statements(db)
    per_connection: dict[int, list[str]] = {}
    for pid, _, statement, _, _ in kept:
        if "nearest_index" in statement and "tenant" in statement:
            per_connection.setdefault(pid, []).append(
                "with_text" if "AS r(id, score)" in statement else "side"
            )
    assert per_connection and max(len(v) for v in per_connection.values()) <= KEYED
    assert any("AS v(id, distance)" in s for _, _, s, _, _ in kept)  # the fusion alone kept its place
