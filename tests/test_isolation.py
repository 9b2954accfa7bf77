"""A namespace is a hard boundary, enforced by PostgreSQL (row-level security), not only by queries."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from memagent.config import Settings
from memagent.errors import DatabaseError, InputError
from memagent.usecases.service import MemoryService
from memagent.usecases.transfer import Transfer
from tests.conftest import fake_embedder
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.both_drivers


@pytest.fixture
def memory(sessions: Callable[[], Session], fake: FakeOpenAI) -> MemoryService:
    service = MemoryService(sessions, fake_embedder(fake), Settings(namespace="alice"))
    service.remember_many(["alice's bank is in Zurich", "alice's cat is called Miso"], namespace="alice")
    service.remember_many(["bob's password hint is his dog's name"], namespace="bob")
    return service


def test_a_query_that_forgets_the_namespace_filter_sees_one_namespace(memory: MemoryService) -> None:
    forgetful = "SELECT content FROM memories ORDER BY content"  # no WHERE namespace = … at all
    with memory.unit("alice") as repo:
        assert list(repo.memories.session.execute(text(forgetful)).scalars()) == [
            "alice's bank is in Zurich",
            "alice's cat is called Miso",
        ]
    with memory.unit("bob") as repo:
        assert list(repo.memories.session.execute(text(forgetful)).scalars()) == [
            "bob's password hint is his dog's name"
        ]
    with memory.unit() as repo:  # a unit that names no namespace sees nothing
        assert list(repo.memories.session.execute(text(forgetful)).scalars()) == []
    with memory.unit("*") as repo:  # the explicit all-namespaces opening (export --all-namespaces, import)
        assert len(list(repo.memories.session.execute(text(forgetful)).scalars())) == 3


def test_a_forgetful_update_or_delete_cannot_touch_another_namespace(memory: MemoryService) -> None:
    with memory.unit("alice") as repo:
        deleted = repo.memories.session.execute(text("DELETE FROM memories")).rowcount  # type: ignore[attr-defined]
    assert deleted == 2
    with memory.unit("bob") as repo:
        changed = repo.memories.session.execute(text("UPDATE memories SET session_id = 'x'")).rowcount  # type: ignore[attr-defined]
    assert changed == 1
    assert memory.count(namespace="bob") == 1 and memory.count(namespace="alice") == 0


def test_a_unit_cannot_write_into_another_namespace(memory: MemoryService) -> None:
    with pytest.raises(DatabaseError, match="row-level security"), memory.unit("alice") as repo:
        repo.memories.session.execute(
            text(
                "INSERT INTO memories (namespace, session_id, content, embedding_model, content_hash)"
                " VALUES ('bob', 's', 'planted by alice', 'm', 'h')"
            )
        )
    assert [m.content for m in memory.recent(namespace="bob")] == ["bob's password hint is his dog's name"]


def test_the_app_role_is_subject_to_row_level_security(memory: MemoryService) -> None:
    with memory.unit("alice") as repo:
        role, bypass = repo.memories.session.execute(
            text("SELECT current_user, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
        assert role == "memagent_app" and bypass is False
        # nor switch the protection off
        with pytest.raises(ProgrammingError), repo.memories.session.begin_nested():
            repo.memories.session.execute(text("ALTER TABLE memories DISABLE ROW LEVEL SECURITY"))


def test_recall_recent_purge_and_export_stay_in_their_namespace(memory: MemoryService) -> None:
    found = memory.recall("password hint", namespace="alice", k=10)
    assert found and all(m.namespace == "alice" for m in found)
    assert [m.namespace for m in memory.recent(namespace="bob", limit=10)] == ["bob"]
    assert memory.purge(namespace="alice") == 2
    assert memory.count(namespace="bob") == 1
    exported = list(Transfer(memory).export("bob"))
    assert len(exported) == 1 and "bob's password" in exported[0]


def test_the_all_namespaces_marker_cannot_be_a_namespace(memory: MemoryService) -> None:
    with pytest.raises(InputError, match="reserved"):
        memory.recall("bank", namespace="*")
    with pytest.raises(InputError, match="reserved"):
        memory.remember("planted", namespace="*")
