"""MemagentStore, LangGraph's BaseStore kept in memagent: put/get/search/delete against the real database
(migrated by Alembic) and the loopback embedder, replacing by key, namespaces kept apart, bad namespace
tuples refused, a StateGraph whose nodes read and write through the store, and the async methods."""

from __future__ import annotations

import asyncio
import operator
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Annotated, Any, TypedDict

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

pytest.importorskip(
    "langgraph", reason="the LangGraph store's tests need langgraph: pip install -e '.[langgraph]'"
)

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import GetOp, InvalidNamespaceError, PutOp, SearchOp

from memagent.api import Memory
from memagent.async_api import AsyncMemory
from memagent.integrations.langgraph import MemagentStore, namespace_name
from memagent.store.items import ItemRepository
from memagent.usecases.service import MemoryService
from tests.conftest import fake_embedder
from tests.fake_openai import Failure, FakeOpenAI

pytestmark = pytest.mark.both_drivers

ALICE = ("users", "alice", "memories")
BOB = ("users", "bob", "memories")


@pytest.fixture
def store(service: MemoryService) -> MemagentStore:
    """A store over the rolled-back transaction, searching the values' `content` field."""
    return MemagentStore(service, index={"fields": ["content"]})


def rows(connection: Connection, namespace: str) -> list[tuple[str, dict[str, Any]]]:
    """(content, metadata) of the namespace's memories, oldest first."""
    found = connection.execute(
        text("SELECT content, metadata FROM memories WHERE namespace = :ns ORDER BY id"), {"ns": namespace}
    )
    return [(row.content, row.metadata) for row in found]


def test_put_get_search_delete_round_trip(store: MemagentStore, connection: Connection) -> None:
    """get returns what put stored; the memory holds the indexed text; search finds it; delete ends it."""
    value = {"content": "Alice prefers dark mode in her editor", "tags": ["ui", "editor"], "weight": 0.8}
    store.put(ALICE, "theme", value)
    store.put(ALICE, "pet", {"content": "Alice has a cat called Miso"})
    item = store.get(ALICE, "theme")
    assert item is not None
    assert (item.namespace, item.key, item.value) == (ALICE, "theme", value)
    assert isinstance(item.created_at, datetime) and item.created_at.tzinfo is not None
    assert item.created_at == item.updated_at
    assert store.get(ALICE, "missing") is None
    assert rows(connection, "users.alice.memories")[0][0] == value["content"]  # the text recall searches

    found = store.search(("users", "alice"), query="which editor colour mode does she like", limit=2)
    assert [hit.key for hit in found] == ["theme", "pet"]
    assert found[0].value == value and found[0].namespace == ALICE
    assert found[0].score is not None and found[0].score > (found[1].score or 0.0)

    store.delete(ALICE, "theme")
    assert store.get(ALICE, "theme") is None
    assert [content for content, _ in rows(connection, "users.alice.memories")] == [
        "Alice has a cat called Miso"
    ]
    store.delete(ALICE, "theme")  # deleting what is not there is no error


def test_put_replaces_the_item_of_its_key(store: MemagentStore, connection: Connection) -> None:
    """A second put under a key leaves one memory: the new value and text, the first created_at."""
    store.put(ALICE, "city", {"content": "Alice lives in Lyon"})
    first = store.get(ALICE, "city")
    store.put(ALICE, "city", {"content": "Alice moved to Porto", "since": 2024})
    item = store.get(ALICE, "city")
    assert first is not None and item is not None
    assert item.value == {"content": "Alice moved to Porto", "since": 2024}
    assert item.created_at == first.created_at and item.updated_at > first.updated_at
    assert [content for content, _ in rows(connection, "users.alice.memories")] == ["Alice moved to Porto"]
    assert [hit.value["content"] for hit in store.search(ALICE, query="Lyon")] == ["Alice moved to Porto"]


def test_identical_text_under_two_keys_is_two_items(store: MemagentStore, connection: Connection) -> None:
    """memagent keeps a text once per namespace; two keys with the same text still get their own items."""
    store.put(ALICE, "a", {"content": "Likes tea"})
    store.put(ALICE, "b", {"content": "Likes tea", "n": 2})
    assert [store.get(ALICE, key).value for key in ("a", "b")] == [  # type: ignore[union-attr]
        {"content": "Likes tea"},
        {"content": "Likes tea", "n": 2},
    ]
    assert [content for content, _ in rows(connection, "users.alice.memories")] == [
        "Likes tea",
        "Likes tea\n\n[b]",
    ]
    assert {hit.key for hit in store.search(ALICE, query="tea")} == {"a", "b"}


def test_namespaces_stay_apart_and_are_listed(store: MemagentStore) -> None:
    """The same key in two namespace tuples is two items; search, delete and listing respect the tuples."""
    store.put(ALICE, "food", {"content": "Alice is vegetarian"})
    store.put(BOB, "food", {"content": "Bob loves steak"})
    store.put(("users", "bob", "notes"), "n1", {"content": "Bob's note"})
    assert store.get(ALICE, "food").value == {"content": "Alice is vegetarian"}  # type: ignore[union-attr]
    assert store.get(BOB, "food").value == {"content": "Bob loves steak"}  # type: ignore[union-attr]
    assert [hit.namespace for hit in store.search(ALICE, query="steak food")] == [ALICE]
    assert {hit.namespace for hit in store.search(("users",))} == {ALICE, BOB, ("users", "bob", "notes")}
    assert store.search(("users", "carol")) == []

    assert store.list_namespaces(prefix=("users",)) == [
        ALICE,
        ("users", "bob", "memories"),
        ("users", "bob", "notes"),
    ]
    assert store.list_namespaces(prefix=("users", "*", "memories")) == [ALICE, BOB]
    assert store.list_namespaces(suffix=("notes",)) == [("users", "bob", "notes")]
    assert store.list_namespaces(max_depth=2) == [("users", "alice"), ("users", "bob")]
    assert store.list_namespaces(prefix=("users",), limit=1, offset=1) == [BOB]

    store.delete(ALICE, "food")
    assert store.get(ALICE, "food") is None
    assert store.get(BOB, "food") is not None


def test_filters_on_value_fields(store: MemagentStore) -> None:
    """Filters match value fields exactly or with $eq/$ne/$gt/$gte/$lt/$lte, with and without a query."""
    store.put(ALICE, "1", {"content": "Alice runs on Mondays", "kind": "habit", "stars": 2})
    store.put(ALICE, "2", {"content": "Alice runs marathons", "kind": "goal", "stars": 5})
    store.put(ALICE, "3", {"content": "Alice swims on Fridays", "kind": "habit", "stars": 4})
    assert {hit.key for hit in store.search(ALICE, filter={"kind": "habit"})} == {"1", "3"}
    assert {hit.key for hit in store.search(ALICE, filter={"stars": {"$gte": 4}})} == {"2", "3"}
    assert {hit.key for hit in store.search(ALICE, filter={"kind": {"$ne": "habit"}})} == {"2"}
    ranked = store.search(ALICE, query="Alice runs", filter={"stars": {"$lt": 5}})
    assert [hit.key for hit in ranked] == ["1", "3"] and all(hit.score is not None for hit in ranked)
    assert [hit.key for hit in store.search(ALICE, limit=2, offset=1)] == ["2", "1"]  # newest first, paged
    with pytest.raises(ValueError, match=r"unsupported filter operator '\$in'"):
        store.search(ALICE, filter={"kind": {"$in": ["habit"]}})


@pytest.mark.parametrize(
    ("namespace", "words"),
    [
        (("a.b",), "contains '.'"),
        ((), "at least one label"),
        (("users", ""), "non-empty string"),
        (("tab\there",), "control characters"),
        (("x" * 150, "y" * 60), "at most 200 characters"),
        (("*",), "reserved"),
        (["users"], "a tuple of strings"),
    ],
)
def test_bad_namespace_tuples_are_refused(
    store: MemagentStore, namespace: tuple[str, ...], words: str
) -> None:
    """A tuple that cannot be one memagent namespace name is refused, saying why, and nothing is stored."""
    with pytest.raises(InvalidNamespaceError, match=words):
        store.batch([PutOp(namespace, "k", {"content": "x"})])
    with pytest.raises(InvalidNamespaceError, match=words):
        namespace_name(namespace)


class Chat(TypedDict):
    """The state of the test graphs: the message, and what the recall node found."""

    message: str
    recalled: Annotated[list[str], operator.add]


def recall_then_remember(recall: Any, remember: Any) -> StateGraph[Chat]:
    """START → recall → remember → END, with the given nodes (sync or async)."""
    builder = StateGraph(Chat)
    builder.add_node("recall", recall)
    builder.add_node("remember", remember)
    builder.add_edge(START, "recall")
    builder.add_edge("recall", "remember")
    builder.add_edge("remember", END)
    return builder


def test_a_graph_reads_and_writes_through_the_store(db_url: str, fake: FakeOpenAI, engine: Engine) -> None:
    """A StateGraph compiled with the store over a Memory: a later run recalls what an earlier run stored."""
    user = f"lgtest-{uuid.uuid4().hex[:8]}"

    def recall(state: Chat, runtime: Runtime[None]) -> dict[str, list[str]]:
        assert runtime.store is not None
        hits = runtime.store.search((user, "memories"), query=state["message"], limit=3)
        return {"recalled": [hit.value["content"] for hit in hits]}

    def remember(state: Chat, runtime: Runtime[None]) -> dict[str, list[str]]:
        assert runtime.store is not None
        runtime.store.put((user, "memories"), uuid.uuid4().hex, {"content": state["message"]})
        return {"recalled": []}

    builder = recall_then_remember(recall, remember)
    try:
        with Memory(database_url=db_url, embedder=fake_embedder(fake)) as memory:
            graph = builder.compile(store=MemagentStore(memory, index={"fields": ["content"]}))
            first = graph.invoke({"message": "My favourite language is Rust", "recalled": []})
            assert first["recalled"] == []
            later = graph.invoke({"message": "Which language is my favourite?", "recalled": []})
            assert later["recalled"][0] == "My favourite language is Rust"
            assert memory.count(namespace=f"{user}.memories") == 2
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace LIKE 'lgtest-%'"))


def test_an_async_graph_runs_on_the_loop_through_an_async_memory(
    db_url: str, fake: FakeOpenAI, engine: Engine
) -> None:
    """An async StateGraph (ainvoke, async nodes) over a store on an AsyncMemory: the store's async methods
    go through asyncpg on the graph's own event loop; its sync methods refuse, saying what to use."""
    user = f"lgtest-{uuid.uuid4().hex[:8]}"

    async def recall(state: Chat, runtime: Runtime[None]) -> dict[str, list[str]]:
        assert runtime.store is not None
        hits = await runtime.store.asearch((user, "memories"), query=state["message"], limit=3)
        return {"recalled": [hit.value["content"] for hit in hits]}

    async def remember(state: Chat, runtime: Runtime[None]) -> dict[str, list[str]]:
        assert runtime.store is not None
        await runtime.store.aput((user, "memories"), uuid.uuid4().hex, {"content": state["message"]})
        return {"recalled": []}

    builder = recall_then_remember(recall, remember)

    async def scenario() -> None:
        async with AsyncMemory(database_url=db_url, embedder=fake_embedder(fake)) as memory:
            store = MemagentStore(memory, index={"fields": ["content"]})
            graph = builder.compile(store=store)
            first = await graph.ainvoke({"message": "My favourite language is Rust", "recalled": []})
            assert first["recalled"] == []
            later = await graph.ainvoke({"message": "Which language is my favourite?", "recalled": []})
            assert later["recalled"][0] == "My favourite language is Rust"
            assert await memory.count(namespace=f"{user}.memories") == 2
            with pytest.raises(TypeError, match="async methods"):
                store.get((user, "memories"), "anything")

    try:
        asyncio.run(scenario())
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace LIKE 'lgtest-%'"))


@pytest.mark.psycopg2_only  # runs its own event loop
def test_async_methods_work_in_an_event_loop(store: MemagentStore) -> None:
    """aput/aget/asearch/adelete/alist_namespaces and abatch give what their sync twins give."""

    async def scenario() -> None:
        await store.aput(ALICE, "k1", {"content": "Alice plays the cello"})
        got, hits, missing = await store.abatch(
            [GetOp(ALICE, "k1"), SearchOp(ALICE, query="cello music"), GetOp(BOB, "k1")]
        )
        assert got is not None and got.value == {"content": "Alice plays the cello"}  # type: ignore[union-attr]
        assert [hit.key for hit in hits] == ["k1"] and missing is None  # type: ignore[union-attr]
        item = await store.aget(ALICE, "k1")
        assert item is not None and item.key == "k1"
        assert [hit.key for hit in await store.asearch(("users",), query="cello")] == ["k1"]
        assert await store.alist_namespaces() == [ALICE]
        await store.adelete(ALICE, "k1")
        assert await store.aget(ALICE, "k1") is None

    asyncio.run(scenario())


def test_concurrent_puts_of_one_key_leave_one_item(db_url: str, fake: FakeOpenAI, engine: Engine) -> None:
    """Two threads putting the same key over and over (committed, on a Memory's pool) leave one memory (the
    race is narrow: the next test proves the lock that closes it)."""
    user = f"lgtest-{uuid.uuid4().hex[:8]}"
    try:
        with Memory(database_url=db_url, embedder=fake_embedder(fake)) as memory:
            store = MemagentStore(memory, index={"fields": ["content"]})

            def writer(name: str) -> None:
                for n in range(8):
                    store.put((user,), "profile", {"content": f"{name} wrote version {n}", "n": n})

            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(writer, ["left", "right"]))
            item = store.get((user,), "profile")
            assert item is not None and item.value["n"] == 7
            assert memory.count(namespace=user) == 1
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace LIKE 'lgtest-%'"))


def test_a_put_holds_its_key_until_it_commits(engine: Engine) -> None:
    """The key's lock: a second transaction waits for the same namespace and key, not for another key."""
    with Session(engine) as first, Session(engine) as second, first.begin(), second.begin():
        ItemRepository(first).lock("users.alice", "profile")
        second.execute(text("SET LOCAL lock_timeout = '200ms'"))
        ItemRepository(second).lock("users.alice", "other")
        ItemRepository(second).lock("users.bob", "profile")
        with pytest.raises(OperationalError, match="lock timeout"):
            ItemRepository(second).lock("users.alice", "profile")


def test_a_put_while_the_provider_fails_is_kept_and_found(
    store: MemagentStore, fake: FakeOpenAI, connection: Connection
) -> None:
    """The embeddings provider failing does not lose a put: the item is stored pending, get and search
    (full-text, inside hybrid recall) still find it."""
    fake.failures.append(Failure(status=500))
    store.put(ALICE, "allergy", {"content": "Alice is allergic to peanuts"})
    pending = connection.execute(
        text("SELECT embedding IS NULL FROM memories WHERE namespace = 'users.alice.memories'")
    ).scalar_one()
    assert pending is True
    assert store.get(ALICE, "allergy").value == {"content": "Alice is allergic to peanuts"}  # type: ignore[union-attr]
    assert [hit.key for hit in store.search(("users",), query="peanuts allergy")] == ["allergy"]


def test_search_finds_items_among_many_other_memories(store: MemagentStore, service: MemoryService) -> None:
    """Chat exchanges of the same namespace compete for recall's places: search still finds the item."""
    store.put(("mixed",), "theme", {"content": "budget spreadsheet template"})
    for i in range(12):
        service.remember(f"meeting notes about the quarterly budget review {i}", namespace="mixed")
    found = store.search(("mixed",), query="meeting notes about the quarterly budget review", limit=3)
    assert [item.key for item in found] == ["theme"]


def test_a_memory_that_only_looks_like_an_item_is_not_one(
    store: MemagentStore, service: MemoryService
) -> None:
    """Metadata given to remember() under the items' field, without an item's parts: ignored, not fatal."""
    service.remember("forged", namespace="forged", metadata={"store_item": {"key": "evil"}})
    store.put(("forged",), "real", {"content": "a real item"})
    assert store.get(("forged",), "evil") is None
    assert [item.key for item in store.search(("forged",))] == ["real"]
    assert [item.key for item in store.search(("forged",), query="forged")] == ["real"]


def test_an_item_is_found_by_its_key_through_the_index(
    store: MemagentStore, service: MemoryService, connection: Connection
) -> None:
    """get reads one entry of ix_memories_item_key (revision 0015), not the namespace's memories."""
    from tests.conftest import explain, sent_statements

    for i in range(300):
        service.remember(f"an ordinary memory number {i}", namespace="keyed")
    store.put(("keyed",), "theme", {"content": "dark mode"})
    connection.execute(text("ANALYZE memories"))
    with sent_statements(connection) as sent:
        assert store.get(("keyed",), "theme") is not None
    plan = explain(connection, sent, "->>", "namespace")
    assert "ix_memories_item_key" in plan
