"""AsyncMemory: the same behaviour as Memory through the other front door, and what asyncio code needs of it
(concurrent calls on one loop, a loop that keeps running while PostgreSQL and the provider answer, close)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from memagent import AsyncMemory, MemagentError, Memory
from memagent.config import Settings
from memagent.errors import ConfigError, DatabaseUnavailableError, InputError, KeptError
from memagent.store.async_engine import connect_arguments
from memagent.usecases.recovery import RecoveryFile
from tests.conftest import fake_chat, fake_embedder
from tests.fake_openai import Failure, FakeOpenAI
from tests.learning_script import Script

FRONTS = ("Memory", "AsyncMemory")


class Front:
    """Memory or AsyncMemory behind one synchronous face: the test's own event loop drives AsyncMemory."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.memory: Any = Memory(**options) if kind == "Memory" else AsyncMemory(**options)
        self.loop = asyncio.new_event_loop() if kind == "AsyncMemory" else None

    def __getattr__(self, verb: str) -> Callable[..., Any]:
        method = getattr(self.memory, verb)
        if self.loop is None:
            return method  # type: ignore[no-any-return]
        loop = self.loop
        return lambda *args, **kwargs: loop.run_until_complete(method(*args, **kwargs))

    def close(self) -> None:
        if self.loop is None:
            self.memory.close()
        else:
            self.loop.run_until_complete(self.memory.aclose())
            self.loop.close()


@pytest.fixture
def opened(db_url: str, fake: FakeOpenAI, engine: Engine) -> Iterator[Callable[..., Front]]:
    """Opens Fronts on the test database, each in a namespace of its own (deleted afterwards)."""
    fronts: list[Front] = []

    def open_front(kind: str, **options: Any) -> Front:
        options.setdefault("namespace", f"cli-async-{uuid.uuid4().hex[:8]}")
        options.setdefault("embedder", fake_embedder(fake))
        front = Front(kind, database_url=db_url, **options)
        fronts.append(front)
        return front

    yield open_front
    for front in fronts:
        front.close()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM memories WHERE namespace LIKE 'cli-async-%'"))


@pytest.mark.parametrize("kind", FRONTS)
def test_the_verbs_behave_the_same_through_both_front_doors(
    kind: str, opened: Callable[..., Front], fake: FakeOpenAI
) -> None:
    memory = opened(kind, chat_model=fake_chat(fake))
    first = memory.remember("Priya is building a Rust compiler", session_id="s1", metadata={"via": kind})
    assert first.created and memory.remember("Priya is building a Rust compiler").created is False
    memory.remember("The cat is called Pixel", session_id="s1", created_at=datetime(2026, 1, 5, tzinfo=UTC))
    found = memory.recall("what compiler is Priya building?", k=2)
    assert [m.content for m in found] == ["Priya is building a Rust compiler", "The cat is called Pixel"]
    assert found[0].metadata == {"via": kind} and found[0].score > found[1].score > 0
    near = min(found, key=lambda m: m.distance or 2.0)
    assert near.distance is not None
    within = memory.recall("what compiler is Priya building?", k=5, max_distance=near.distance + 1e-6)
    assert near.content in [m.content for m in within] and len(within) < 2 + (
        found[0].distance == found[1].distance
    )
    assert memory.count() == 2 and memory.count(session_id="nobody") == 0
    assert [m.content for m in memory.recent(limit=1)] == ["Priya is building a Rust compiler"]

    fake.chat_reply = "A Rust compiler."
    turn = memory.chat("What am I building?", session_id="s2")
    assert turn.reply == "A Rust compiler." and found[0].content in [m.content for m in turn.memories]
    assert memory.count() == 3

    # The provider fails: the memory is kept, pending, and embedded by backfill once it answers again.
    fake.failures = [Failure(500, path="/embeddings")]
    pending = memory.remember("Written while the provider was down")
    assert pending.pending_reason is not None and memory.pending() == 1
    assert memory.backfill() == 1 and memory.pending() == 0

    assert memory.purge(before=datetime(2026, 2, 1, tzinfo=UTC)) == 1
    assert memory.purge(session_id="s2") == 1
    with pytest.raises(InputError, match="everything=True is every memory"):  # not the session alone
        memory.purge(everything=True, session_id="s1")
    assert memory.purge(everything=True) == 2 and memory.count() == 0


@pytest.mark.parametrize("kind", FRONTS)
def test_facts_history_and_compression_through_both_front_doors(
    kind: str, opened: Callable[..., Front], fake: FakeOpenAI
) -> None:
    script = Script(fake)
    script.facts["Berlin"] = [{"text": "Priya lives in Berlin", "importance": 0.7}]
    memory = opened(kind, chat_model=fake_chat(fake))
    stored = memory.remember("User: I live in Berlin", extract=True)
    assert stored.learned is not None and len(stored.learned.added) == 1
    facts = memory.facts()
    assert [f.content for f in facts] == ["Priya lives in Berlin"]
    assert memory.history(facts[0].id).entries[0].sources == (stored.id,)
    assert [m.kind for m in memory.recall("where does Priya live?", kinds=["fact"])] == ["fact"]
    old = datetime.now(UTC) - timedelta(days=60)
    memory.remember("User: I love tea", session_id="old", created_at=old)
    script.facts["tea"] = [{"text": "Priya loves tea", "importance": 0.3}]
    assert len(memory.extract().added) == 1
    fake.chat_handler, fake.chat_reply = None, json.dumps({"summary": "Priya loves tea."})
    report = memory.compress("30d", session_id="old")
    assert report.summaries_stored == 1
    kinds = sorted(m.kind for m in memory.recall("tea", session_id="old", k=5))
    assert kinds == ["fact", "summary"]  # the exchange is archived: kept, not recalled by default
    assert "exchange" in [m.kind for m in memory.recall("tea", session_id="old", include_archived=True)]


@pytest.mark.parametrize("kind", FRONTS)
def test_bad_input_is_the_same_error_through_both_front_doors(
    kind: str, opened: Callable[..., Front]
) -> None:
    memory = opened(kind)
    with pytest.raises(InputError, match="empty"):
        memory.remember("   ")
    with pytest.raises(InputError):
        memory.recall("anything", k=0)
    with pytest.raises(InputError, match="say what to purge"):
        memory.purge()
    with pytest.raises(ConfigError, match="no chat model"):
        memory.extract()
    assert memory.count() == 0  # nothing was stored on the way


def test_concurrent_calls_share_one_loop_that_keeps_running(
    opened: Callable[..., Front], fake: FakeOpenAI
) -> None:
    front = opened("AsyncMemory")
    memory: AsyncMemory = front.memory
    assert front.loop is not None

    async def scenario() -> tuple[list[list[str]], list[list[str]], float, int]:
        for i in range(12):
            await memory.remember(f"memory number {i} about topic {i % 3}")
        queries = [f"topic {i % 3} memory {i}" for i in range(24)]
        one_by_one = [[m.content for m in await memory.recall(q, k=3)] for q in queries]
        fake.latency = 0.2  # each query's embedding takes 0.2 s: concurrent calls must overlap
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(ticker())
        started = time.perf_counter()
        together = await asyncio.gather(*(memory.recall(q, k=3) for q in queries))
        elapsed = time.perf_counter() - started
        beat.cancel()
        return one_by_one, [[m.content for m in r] for r in together], elapsed, ticks

    try:
        one_by_one, together, elapsed, ticks = front.loop.run_until_complete(scenario())
    finally:
        fake.latency = 0.0
    assert together == one_by_one  # the same answers, in the order asked
    assert elapsed < 24 * 0.2 / 2, elapsed  # overlapped, not one after another (4.8 s)
    assert ticks >= elapsed / 0.01 / 4  # the loop kept serving other tasks meanwhile


def test_close_waits_for_calls_in_flight_and_refuses_new_ones_meanwhile(
    opened: Callable[..., Front], fake: FakeOpenAI
) -> None:
    front = opened("AsyncMemory")
    memory: AsyncMemory = front.memory
    assert front.loop is not None

    async def scenario() -> Any:
        await memory.remember("the first memory")
        fake.latency = 0.3
        slow = asyncio.create_task(memory.remember("stored while closing"))
        await asyncio.sleep(0.05)
        closing = asyncio.create_task(memory.aclose())
        await asyncio.sleep(0.05)
        with pytest.raises(MemagentError, match="closing"):
            await memory.count()
        await closing
        return slow.result()  # finished before aclose returned

    try:
        result = front.loop.run_until_complete(scenario())
    finally:
        fake.latency = 0.0
    assert result.created
    assert front.count() == 2  # a call after aclose() opens the database again, as Memory's do


def test_async_memory_starts_the_embedded_server_when_no_url_is_set(
    fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zero setup holds for AsyncMemory too: the embedded server is started (and migrated, on psycopg2, off
    the loop) on first use and stopped when the last user closes."""
    from memagent.store.embedded import EmbeddedPostgres

    home = tmp_path / "async-home"
    monkeypatch.setenv("MEMAGENT_HOME", str(home))

    async def scenario() -> list[str]:
        memory = AsyncMemory(embedder=fake_embedder(fake))
        # The first call, cancelled while the server starts: the start runs to its end and is undone, so
        # no client of this process is left holding the server up.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(memory.remember("never stored"), 0.05)
        async with memory:
            await memory.remember("Stored through asyncpg on the embedded server's socket")
            return [m.content for m in await memory.recall("embedded server", k=5)]

    server = EmbeddedPostgres(home)
    try:
        assert asyncio.run(scenario()) == ["Stored through asyncpg on the embedded server's socket"]
        assert not server.running()  # the last user closed: it stopped (MEMAGENT_LINGER=0)
        with Memory(embedder=fake_embedder(fake)) as memory:  # the same data through the other door
            assert memory.count() == 1
    finally:
        server.destroy()


def test_aclose_closes_the_provider_client_of_its_loop(
    db_url: str, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """The openai SDK's async client belongs to the loop it was made on: aclose closes it there, so nothing
    is left to fail ("Event loop is closed") when the loop is gone, and the next loop gets a client of its
    own."""
    import gc

    embedder = fake_embedder(fake)

    async def scenario() -> None:
        async with AsyncMemory(database_url=db_url, namespace="cli-async-clients", embedder=embedder) as m:
            # (a database where nothing was ever stored answers a recall without asking the model)
            await m.remember("something to recall")
            await m.recall("anything at all")
            assert embedder._client._async is not None  # made on this loop, for this loop

    asyncio.run(scenario())
    assert embedder._client._async is None
    asyncio.run(scenario())  # a second loop: a new client, closed again
    gc.collect()
    assert "Event loop is closed" not in caplog.text


@pytest.mark.parametrize("kind", FRONTS)
def test_an_unreachable_database_keeps_the_memory_and_says_so_in_one_line(
    kind: str, fake: FakeOpenAI
) -> None:
    front = Front(
        kind, database_url="postgresql://alice:S3cretPW@127.0.0.1:1/db", embedder=fake_embedder(fake)
    )
    try:
        with pytest.raises(KeptError) as kept:
            front.remember("written while the database was down")
        message = str(kept.value)
        assert message.startswith(
            "cannot connect to PostgreSQL at postgresql+psycopg2://alice:***@127.0.0.1:1"
        )
        assert "S3cretPW" not in message and "\n" not in message and "<class" not in message
        assert "written while the database was down" in RecoveryFile(Settings().home_path()).path.read_text()
        with pytest.raises(DatabaseUnavailableError, match="cannot connect to PostgreSQL"):
            front.recall("anything")
    finally:
        front.close()


def test_libpq_url_options_reach_asyncpg_or_are_refused_by_name(db_url: str, fake: FakeOpenAI) -> None:
    dsn, options = connect_arguments(
        "postgresql+psycopg2://a:p%40ss@h:5433/db?sslmode=require&connect_timeout=3"
        "&application_name=app&options=-c%20statement_timeout%3D5000"
    )
    assert dsn == "postgresql://a:p%40ss@h:5433/db?sslmode=require" and options["timeout"] == 3.0
    assert options["server_settings"]["application_name"] == "app"
    assert options["server_settings"]["statement_timeout"] == "5000"
    with pytest.raises(ConfigError, match="'keepalives'"):
        connect_arguments("postgresql+psycopg2://u@h/db?keepalives=1")
    with pytest.raises(ConfigError, match="port"):
        connect_arguments("postgresql+psycopg2://u@h:99999/db")
    # The options a hosted PostgreSQL asks for work end to end (sslmode=prefer: this socket has no TLS).
    url = db_url + "&sslmode=prefer&connect_timeout=5&application_name=memagent-test"
    front = Front("AsyncMemory", database_url=url, namespace="cli-async-url", embedder=fake_embedder(fake))
    try:
        assert front.count() == 0
    finally:
        front.close()


def test_acloses_that_overlap_an_open_or_each_other_finish(opened: Callable[..., Front]) -> None:
    front = opened("AsyncMemory")
    memory: AsyncMemory = front.memory
    assert front.loop is not None

    async def scenario() -> int:
        first = asyncio.create_task(memory.count())  # opens the database
        await asyncio.sleep(0)
        await asyncio.wait_for(memory.aclose(), 20)  # waits for the open and the call, then closes
        counted = first.result()
        await asyncio.wait_for(asyncio.gather(memory.aclose(), memory.aclose()), 20)  # both return
        return counted + await memory.count()  # and the memory opens again afterwards

    assert front.loop.run_until_complete(scenario()) == 0


def test_a_new_event_loop_opens_the_database_anew(db_url: str, fake: FakeOpenAI, engine: Engine) -> None:
    """asyncio.run once more (a test framework's loop per test): the old loop's connections are let go and
    every call is served, nothing lost."""
    memory = AsyncMemory(database_url=db_url, namespace="cli-async-loops", embedder=fake_embedder(fake))
    try:
        for text_ in ("first loop", "second loop", "third loop"):
            assert asyncio.run(memory.remember(text_)).created
        assert asyncio.run(memory.count()) == 3
    finally:
        asyncio.run(memory.aclose())
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace = 'cli-async-loops'"))


def test_memagent_runs_without_the_async_extra(cli_env: dict[str, str]) -> None:
    """greenlet (the `async` extra) is optional: the CLI and Memory never need it (here made unimportable)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['greenlet'] = None; sys.argv = ['memagent', *sys.argv[1:]]\n"
        "from memagent.cli import main; main()"
    )
    env = os.environ | cli_env
    stored = subprocess.run(
        [sys.executable, "-c", code, "remember", "stored with no greenlet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert stored.returncode == 0, stored.stderr
    found = subprocess.run(
        [sys.executable, "-c", code, "recall", "no greenlet", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0 and "stored with no greenlet" in found.stdout, found.stderr
