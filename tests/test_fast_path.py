"""The one-round-trip paths: recall as one checked statement, remember as one guarded INSERT, the throttled
catch-up. What a service remembers between calls (the embedding space) must never outlive the truth."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session

from memagent.config import Settings
from memagent.errors import EmbeddingMismatchError
from memagent.providers.embeddings import OpenAIEmbedder
from memagent.store.database import Database
from memagent.usecases.service import MemoryService
from tests.conftest import DIM, FAKE_MODEL, fake_embedder
from tests.fake_openai import Failure, FakeOpenAI

pytestmark = pytest.mark.both_drivers

EMBED = "/embeddings"


def test_a_reembed_between_two_recalls_is_followed(
    sessions: Callable[[], Session], connection: Connection, fake: FakeOpenAI
) -> None:
    other_model = "fake-embed-other"
    other = fake_embedder(fake, model=other_model)
    memory = MemoryService(
        sessions,
        fake_embedder(fake),
        Settings(namespace="moved"),
        rechoose=lambda space: other if space == (other_model, DIM) else None,
    )
    memory.remember("the lighthouse keeper paints the stairs blue")
    assert memory.recall("lighthouse stairs", mode="vector")[0].embedding_model == FAKE_MODEL
    # Another process moves the database to another model (as `memagent reembed` does at its switch-over).
    connection.execute(text("UPDATE embedding_space SET model = :m"), {"m": other_model})
    connection.execute(text("UPDATE memories SET embedding_model = :m"), {"m": other_model})
    fake.reset()
    found = memory.recall("lighthouse stairs", mode="vector")
    assert memory.embedder is other  # followed the database
    assert found[0].embedding_model == other_model
    # The query was embedded again with the new model before the retry.
    assert fake.embedding_requests()[-1]["body"]["model"] == other_model


def test_a_model_change_between_calls_is_refused_not_mixed(
    sessions: Callable[[], Session], connection: Connection, fake: FakeOpenAI
) -> None:
    memory = MemoryService(sessions, fake_embedder(fake), Settings(namespace="moved"))
    memory.remember("the ferry leaves at seven")
    assert memory.recall("ferry", mode="vector")
    connection.execute(text("UPDATE embedding_space SET model = 'someone-else'"))
    with pytest.raises(EmbeddingMismatchError):
        memory.recall("ferry", mode="vector")
    with pytest.raises(EmbeddingMismatchError):  # the guarded INSERT writes nothing, the full path refuses
        memory.remember("the ferry leaves at eight")
    assert connection.execute(text("SELECT count(*) FROM memories WHERE namespace = 'moved'")).scalar() == 1


def test_an_index_kind_change_between_recalls_just_updates_what_is_known(
    service: MemoryService, connection: Connection
) -> None:
    service.remember("the bakery opens at six")
    service.recall("bakery", mode="vector")
    connection.execute(text("UPDATE embedding_space SET index_kind = 'halfvec'"))
    assert service.recall("bakery", mode="vector")[0].content == "the bakery opens at six"
    known = service.known.get(service.embedder)
    assert known is not None and known[2] == "halfvec"


def test_remembering_the_same_text_twice_on_the_fast_path_keeps_one(service: MemoryService) -> None:
    first = service.remember("the spare key is under the blue pot")
    second = service.remember("the spare key is under the blue pot")
    assert first.created and not second.created and first.id == second.id
    assert service.count() == 1


def test_the_catch_up_runs_at_most_once_a_minute_unless_this_service_left_something_pending(
    sessions: Callable[[], Session], fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = MemoryService(sessions, fake_embedder(fake), Settings(namespace="later"))
    reader = MemoryService(sessions, fake_embedder(fake), Settings(namespace="later"))
    writer.remember("stored while all is well")
    reader.recall("well")  # the reader's first successful call catches up (nothing waits)
    fake.failures = [Failure(500, path=EMBED)]
    assert writer.remember("stored while the provider fails").pending
    reader.recall("provider")  # within the minute: the reader does not look again
    assert reader.pending() == 1
    clock = time.monotonic() + 61
    monkeypatch.setattr("memagent.usecases.known_space.time.monotonic", lambda: clock)
    reader.recall("provider")  # a minute later it does
    assert reader.pending() == 0
    fake.failures = [Failure(500, path=EMBED)]
    assert writer.remember("pending again").pending
    writer.remember("the provider is back")  # the service that left it pending catches up at once
    assert writer.pending() == 0


# -- over an engine: the one-round-trip unit of work itself --------------------------------------------------


def test_one_round_trip_recall_runs_under_row_level_security_and_leaves_nothing_behind(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    service, db, namespace = engine_service
    service.remember("the orchid needs water on Sundays")
    service.remember("someone else's secret", namespace=namespace + "-other")
    found = service.recall("orchid water", k=10)
    assert [m.namespace for m in found] == [namespace]
    # A statement that forgets its namespace filter still sees one namespace: PostgreSQL enforces it.
    rows = service.unit.run(namespace, "SELECT content, current_user FROM memories ORDER BY content", {})
    assert rows == [("the orchid needs water on Sundays", "memagent_app")]
    assert service.unit.run("nobody", "SELECT content FROM memories", {}) == []
    # The role and the LOCAL settings ended with the statement's implicit transaction.
    for _ in range(3):
        with db.engine.connect() as conn:
            user, ns, iterative = conn.execute(
                text(
                    "SELECT current_user, current_setting('memagent.namespace', true),"
                    " current_setting('hnsw.iterative_scan')"
                )
            ).one()
            assert user != "memagent_app" and not ns and iterative == "off"


def test_a_dropped_connection_costs_one_retry_not_the_recall(
    engine_service: tuple[MemoryService, Database, str], engine: Engine
) -> None:
    service, db, _ = engine_service
    pids: list[int] = []
    event.listen(db.engine, "connect", lambda dbapi, _record: pids.append(dbapi.get_backend_pid()))
    service.remember("the tide turns at noon")
    assert service.recall("tide", mode="vector")
    # The service's pooled connections are cut, as a server restart or a proxy would.
    # (Every one still open, each waited for: the pool may have closed one already.)
    with engine.connect() as conn:  # another engine's connection
        killed = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE pid = ANY (CAST(:p AS int[]))"
            ),
            {"p": pids},
        ).scalar_one()
    assert killed >= 1
    assert service.recall("tide", mode="vector")[0].content == "the tide turns at noon"
    assert service.remember("the tide turns again at midnight").created


def test_the_one_statement_path_goes_without_the_liveness_check(
    engine_service: tuple[MemoryService, Database, str], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UnitOfWork.run (recall, the one-INSERT store) takes a pooled connection without `SELECT 1` first (it
    replaces a dropped one itself); a unit of work with a session is checked first; either way connections
    cut meanwhile (a server restart) are replaced, not reported."""
    service, db, _ = engine_service
    pids: list[int] = []
    event.listen(db.engine, "connect", lambda dbapi, _record: pids.append(dbapi.get_backend_pid()))
    pings: list[int] = []
    dialect = db.engine.dialect
    real_ping = dialect.do_ping

    def counted_ping(conn: Any) -> bool:
        pings.append(1)
        return real_ping(conn)

    monkeypatch.setattr(dialect, "do_ping", counted_ping)

    def cut_all() -> None:
        with engine.connect() as conn:  # another engine's connection
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:p AS int[])) AS pid"), {"p": pids}
            )

    assert service.remember("the bakery opens at six").created  # the first call verifies the space: a session
    assert service.recall("bakery", mode="vector")
    pings.clear()
    for _ in range(3):
        assert service.recall("bakery", mode="vector")[0].content == "the bakery opens at six"
        assert service.recall("bakery opens", mode="hybrid")[0].content == "the bakery opens at six"
    assert service.remember("the bakery closes at two").created
    assert pings == []
    assert service.count() == 2  # a unit of work with a session: checked first
    assert len(pings) == 1
    cut_all()
    assert service.count() == 2  # the check found the connection dropped: the pool connected anew ...
    assert len(pings) == 2  # ... and the new connection, just opened, was not checked (as pool_pre_ping)
    held = [db.engine.raw_connection() for _ in range(3)]  # three live connections in the pool ...
    for pooled in held:
        pooled.close()
    cut_all()  # ... all cut: the one-INSERT store's retry must not take the next dead one unchecked
    assert service.remember("the bakery bakes rye on fridays").created
    cut_all()
    assert service.recall("bakery opens", mode="hybrid")[0].content == "the bakery opens at six"
    assert service.count() == 3


def test_an_unreachable_provider_still_degrades_on_the_fast_path(
    engine_service: tuple[MemoryService, Database, str],
) -> None:
    service, db, namespace = engine_service
    service.remember("the cafeteria closes at three")
    down = MemoryService(
        db.sessions,
        OpenAIEmbedder(
            model=FAKE_MODEL, dim=DIM, base_url="http://127.0.0.1:9/v1", api_key="sk-x", max_retries=0
        ),
        Settings(namespace=namespace),
    )
    found = down.recall("cafeteria closes")
    assert found.degraded is not None and found[0].content == "the cafeteria closes at three"
