"""MemoryService: the verbs end to end over the real schema and the loopback OpenAI server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from memagent.config import Settings
from memagent.errors import EmbeddingMismatchError, InputError
from memagent.usecases.service import MemoryService
from tests.conftest import fake_embedder
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.both_drivers


def test_remember_then_recall_finds_the_memory_first(service: MemoryService, connection: Connection) -> None:
    service.remember(
        "My name is Priya and I'm building a Rust compiler for embedded targets", session_id="s1"
    )
    service.remember("The weather in Lisbon was sunny all week", session_id="s2")
    service.remember("Dinner plans: pasta with friends on Friday", session_id="s2")

    found = service.recall("Which compiler am I building in Rust?")
    assert found[0].content.startswith("My name is Priya")
    assert found[0].session_id == "s1"
    assert found[0].namespace == "test"
    assert (found[0].similarity or 0) > (found[1].similarity or 0)

    stored = connection.execute(
        text(
            "SELECT session_id, embedding_model, vector_dims(embedding) FROM memories"
            " WHERE namespace = 'test'"
        )
    ).all()
    assert len(stored) == 3
    assert {row[1] for row in stored} == {"fake-embed-384"}
    assert {row[2] for row in stored} == {384}


def test_remember_strips_and_deduplicates(service: MemoryService) -> None:
    first = service.remember("  same text  ")
    second = service.remember("same text")
    assert first.created and not second.created and first.id == second.id
    assert service.count() == 1


def test_namespaces_do_not_see_each_other(service: MemoryService) -> None:
    service.remember("secret plans of alice", namespace="alice")
    service.remember("bob likes trains", namespace="bob")
    assert [m.content for m in service.recall("plans", namespace="bob", k=10)] == ["bob likes trains"]
    assert service.count(namespace="alice") == 1


@pytest.mark.parametrize(
    ("text_in", "message"),
    [("", "empty"), ("   \n\t", "empty"), ("bad\x00byte", "NUL")],
)
def test_bad_text_is_refused_and_nothing_is_stored(
    service: MemoryService, text_in: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        service.remember(text_in)
    assert service.count() == 0


def test_bad_recall_arguments(service: MemoryService) -> None:
    with pytest.raises(InputError, match="k must be between"):
        service.recall("x", k=0)
    with pytest.raises(InputError, match="max distance"):
        service.recall("x", max_distance=3.0)
    with pytest.raises(InputError, match="namespace"):
        service.recall("x", namespace="")
    with pytest.raises(InputError, match="session"):  # not the default session, silently
        service.remember("x", session_id="")
    with pytest.raises(InputError, match="namespace: it must be a string, not int"):
        service.recall("x", namespace=5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="session: it must be a string, not int"):
        service.recall("x", session_id=5)  # type: ignore[arg-type]
    for limit in ("3", 2.5, True):
        with pytest.raises(InputError, match="limit must be a whole number"):
            service.recent(limit=limit)  # type: ignore[arg-type]


def test_a_numpy_distance_cut_off_is_a_number_to_sql(service: MemoryService) -> None:
    import numpy as np

    service.remember("the first memory")
    found = service.recall("the first memory", max_distance=np.float64(1.5), mode="vector")
    assert [m.content for m in found] == ["the first memory"]
    # through the API a count is a whole number: True, 2.5 and "3" are refused in one line, not cast
    for k in (True, 2.5, "3"):
        with pytest.raises(InputError, match="k must be a whole number"):
            service.recall("x", k=k)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ef_search must be a whole number"):
        service.recall("x", ef_search=1.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="max distance must be a number"):
        service.recall("x", max_distance="0.5")  # type: ignore[arg-type]


def test_recall_on_a_database_never_written_does_not_call_the_model(
    service: MemoryService, connection: Connection, fake: FakeOpenAI
) -> None:
    connection.execute(text("DELETE FROM embedding_space"))
    connection.execute(text("DELETE FROM memories"))
    assert service.recall("anything").memories == []
    assert fake.embedding_requests() == []


def test_another_model_is_a_clear_error_naming_both(
    sessions: Callable[[], Session], fake: FakeOpenAI, service: MemoryService
) -> None:
    service.remember("stored with the first model")
    other = MemoryService(sessions, fake_embedder(fake, model="other-embed-384"), Settings(namespace="test"))
    with pytest.raises(EmbeddingMismatchError) as caught:
        other.recall("anything")
    assert "fake-embed-384" in str(caught.value) and "other-embed-384" in str(caught.value)
    with pytest.raises(EmbeddingMismatchError):
        other.remember("must not be stored")
    assert service.count() == 1


def test_another_dimension_is_a_clear_error_not_a_driver_error(
    sessions: Callable[[], Session], fake: FakeOpenAI, connection: Connection
) -> None:
    connection.execute(text("DELETE FROM embedding_space"))
    wide = MemoryService(
        sessions, fake_embedder(fake, model="fake-embed-1536", dim=1536), Settings(namespace="test")
    )
    with pytest.raises(EmbeddingMismatchError, match="384-dimension") as caught:
        wide.remember("My name is Priya")
    assert "1536" in str(caught.value)
    assert "expected" not in str(caught.value)
    assert fake.embedding_requests() == []  # refused before any embedding work


def test_purge_scopes(service: MemoryService) -> None:
    service.remember("one", session_id="a")
    service.remember("two", session_id="b")
    service.remember("three", session_id="b", namespace="kept")
    assert service.purge(session_id="b") == 1
    assert [m.content for m in service.recent(limit=10)] == ["one"]
    assert service.purge() == 1
    assert service.count() == 0
    assert service.count(namespace="kept") == 1


def test_the_connection_is_over_the_driver_asked_for(connection: Connection, driver: str) -> None:
    # The both_drivers machinery itself (tests/conftest.py): an asyncpg run really talks through asyncpg.
    assert connection.dialect.driver == driver
    assert connection.execute(text("SELECT 1")).scalar_one() == 1
