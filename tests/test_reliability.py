"""Faults memagent must survive: provider failures (pending embeddings), database restarts, kill -9,
concurrent writers. Each test injects the fault and checks nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from memagent.cli.app import app
from memagent.config import Settings
from memagent.errors import ProviderError
from memagent.providers.embeddings import OpenAIEmbedder
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.memories import MemoryRepository
from memagent.store.scope import Scope
from memagent.usecases.service import MemoryService
from tests.conftest import DIM, FAKE_MODEL, fake_embedder, process_env, provider_env
from tests.fake_openai import Failure, FakeOpenAI, fake_embedding

pytestmark = pytest.mark.both_drivers

EMBED = "/embeddings"
runner = CliRunner()


def unreachable_embedder_service(sessions: Callable[[], Session], fake: FakeOpenAI) -> MemoryService:
    return MemoryService(sessions, fake_embedder(fake), Settings(namespace="faults"))


@pytest.mark.parametrize(
    "failure",
    [Failure(500, path=EMBED), Failure(429, path=EMBED), Failure(503, delay=6.0, path=EMBED)],
    ids=["http-500", "http-429", "timeout"],
)
def test_a_failed_embedding_is_stored_pending_then_backfilled(
    sessions: Callable[[], Session], fake: FakeOpenAI, failure: Failure
) -> None:
    memory = unreachable_embedder_service(sessions, fake)
    memory.remember("the staging server lives in Frankfurt")  # the database's model is now recorded
    fake.failures = [failure]
    result = memory.remember("the deploy key rotates every ninety days")
    assert result.pending and result.created
    assert result.pending_reason is not None
    assert memory.pending() == 1

    # Meanwhile vector search skips it and full-text search finds it.
    query = fake_embedding("deploy key rotation", DIM)
    with sessions() as session, session.begin():
        repo = MemoryRepository(session)
        vector = repo.search(query, scope=Scope("faults"), k=5, mode="vector")
        assert "the deploy key rotates every ninety days" not in [m.content for m in vector]
        found = repo.search(query, scope=Scope("faults"), k=5, mode="text", query_text="deploy key rotates")
        assert [m.content for m in found] == ["the deploy key rotates every ninety days"]
        assert found[0].distance is None  # no vector to compare yet

    fake.failures = [Failure(500, path=EMBED)]
    with pytest.raises(ProviderError):
        memory.backfill()
    assert memory.backfill() == 1
    assert memory.pending() == 0
    nearest = memory.recall("the deploy key rotates every ninety days", k=1, mode="vector")[0]
    assert nearest.content == "the deploy key rotates every ninety days"
    assert nearest.similarity == pytest.approx(1.0, abs=1e-5)
    assert nearest.embedding_model == FAKE_MODEL


def test_an_unreachable_provider_falls_back_to_full_text_recall(
    sessions: Callable[[], Session], fake: FakeOpenAI
) -> None:
    memory = unreachable_embedder_service(sessions, fake)
    memory.remember("the cafeteria closes at three on Fridays")
    down = MemoryService(
        sessions,
        OpenAIEmbedder(  # nothing listens on port 9
            model=FAKE_MODEL, dim=DIM, base_url="http://127.0.0.1:9/v1", api_key="sk-x", max_retries=0
        ),
        Settings(namespace="faults"),
    )
    found = down.recall("when does the cafeteria close", k=3)
    assert [m.content for m in found] == ["the cafeteria closes at three on Fridays"]
    assert found.degraded is not None and "cannot reach the embeddings provider" in found.degraded
    with pytest.raises(ProviderError):
        down.recall("cafeteria", mode="vector")  # asked for vectors only: say it plainly


def test_the_next_successful_call_embeds_pending_memories_by_itself(
    sessions: Callable[[], Session], fake: FakeOpenAI
) -> None:
    memory = unreachable_embedder_service(sessions, fake)
    memory.remember("first memory")
    fake.failures = [Failure(500, path=EMBED), Failure(500, path=EMBED)]
    assert memory.remember("written while the provider was down").pending
    assert memory.remember("also written while down").pending
    assert memory.pending() == 2
    assert not memory.remember("the provider is back").pending
    assert memory.pending() == 0


def test_the_python_api_reports_and_backfills_pending_memories(db_url: str, fake: FakeOpenAI) -> None:
    from memagent.api import Memory

    namespace = "api-pending"
    with Memory(database_url=db_url, namespace=namespace, embedder=fake_embedder(fake)) as memory:
        memory.purge(everything=True)
        memory.remember("stored while the provider works")
        fake.failures = [Failure(503, path=EMBED)]
        assert memory.remember("stored while it fails").pending
        assert memory.pending() == 1
        assert memory.backfill() == 1
        assert memory.pending() == 0
        memory.purge(everything=True)


def test_cli_remember_and_recall_say_what_is_pending(
    cli_env: dict[str, str], fake: FakeOpenAI, engine: Engine
) -> None:
    assert runner.invoke(app, ["remember", "the VPN config is in the wiki"]).exit_code == 0
    fake.failures = [Failure(500, path=EMBED)]
    stored = runner.invoke(app, ["remember", "the printer on floor 3 is broken"])
    assert stored.exit_code == 0, stored.output
    assert "Stored with its embedding pending (the embeddings provider answered HTTP 500" in stored.stderr
    assert fake.api_key not in stored.output

    recalled = runner.invoke(app, ["recall", "printer floor", "--json"])
    assert recalled.exit_code == 0, recalled.output
    assert json.loads(recalled.stdout)[0]["content"] == "the printer on floor 3 is broken"
    # The recall's own embedding call succeeded, so the pending memory was embedded on the way.
    with engine.connect() as conn:
        waiting = conn.execute(
            text("SELECT count(*) FROM memories WHERE namespace = :ns AND embedding IS NULL"),
            {"ns": cli_env["MEMAGENT_NAMESPACE"]},
        ).scalar_one()
    assert waiting == 0

    fake.failures = [Failure(500, path=EMBED)] * 2
    runner.invoke(app, ["remember", "the badge reader needs a new battery"])
    fake.failures = [Failure(500, path=EMBED)]
    degraded = runner.invoke(app, ["recall", "badge reader battery", "--json"])
    assert degraded.exit_code == 0, degraded.output
    assert "Recalled by full-text search only" in degraded.stderr
    assert "1 memory in this namespace waits for an embedding" in degraded.stderr
    assert json.loads(degraded.stdout)[0]["similarity"] is None

    filled = runner.invoke(app, ["backfill"])
    assert filled.exit_code == 0, filled.output
    assert "Embedded 1 pending memory; 0 still pending." in filled.stderr
    again = runner.invoke(app, ["backfill"])
    assert "No memories wait for their embeddings." in again.stderr


# -- the database going away --------------------------------------------------------------------------------


def test_the_embedded_server_stopping_mid_chat_is_healed_by_the_next_turn(
    home: Path, fake: FakeOpenAI
) -> None:
    from memagent.api import Memory
    from memagent.store.embedded import EmbeddedPostgres
    from tests.test_chat import chat_model

    with Memory(home=str(home), embedder=fake_embedder(fake), chat_model=chat_model(fake)) as memory:
        first = memory.chat("My locker code is 4711.", session_id="s")
        assert first.stored is not None
        EmbeddedPostgres(home).stop()  # a crash, a restart, a laptop waking up: the server is gone
        second = memory.chat("What is my locker code?", session_id="t")  # a new session: recall, not history
        assert second.stored is not None and second.kept is None and second.db_error is None
        assert "My locker code is 4711." in second.system_prompt
        assert memory.count() == 2


def test_an_unreachable_database_keeps_the_memory_for_the_next_run(
    tmp_path: Path, home: Path, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An external database going down: remember and chat say so in one line and keep the memory."""
    from memagent.api import Memory
    from tests.test_chat import chat_model

    server = EmbeddedPostgres(tmp_path / "external-postgres")  # reached by URL: memagent cannot restart it
    url = server.acquire()
    env = {"MEMAGENT_HOME": str(home), "MEMAGENT_DATABASE_URL": url, **provider_env(fake)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        assert runner.invoke(app, ["migrate"]).exit_code == 0
        with Memory(embedder=fake_embedder(fake), chat_model=chat_model(fake)) as memory:
            assert memory.chat("Hello there.", session_id="c").stored is not None
            server.stop()
            turn = memory.chat("Remind me to water the plants.", session_id="c")
        assert turn.reply is not None and turn.stored is None and turn.kept == home / "recovery.jsonl"
        assert turn.db_error is not None and "cannot connect" in turn.db_error

        result = runner.invoke(app, ["remember", "the fire drill is on Tuesday"])
        assert result.exit_code == 3
        assert len(result.stderr.strip().splitlines()) == 1
        assert "cannot connect to PostgreSQL" in result.stderr and "kept in" in result.stderr
        with_password = runner.invoke(
            app,
            ["remember", "the door code changed"],
            env={"MEMAGENT_DATABASE_URL": "postgresql://memagent:s3cret-pass@127.0.0.1:9/memagent"},
        )
        assert with_password.exit_code == 3 and "s3cret-pass" not in with_password.output

        kept = [json.loads(line) for line in (home / "recovery.jsonl").read_text().splitlines()]
        assert [k["content"] for k in kept] == [
            f"User: Remind me to water the plants.\nAssistant: {fake.chat_reply}",
            "the fire drill is on Tuesday",
            "the door code changed",
        ]
        assert oct((home / "recovery.jsonl").stat().st_mode & 0o777) == "0o600"

        server.acquire()  # the database is back
        back = runner.invoke(app, ["remember", "the database is back"])
        assert back.exit_code == 0, back.output
        assert "Stored 2 memories kept in the recovery file" in back.stderr
        # The memory kept for the other URL (the dead port) is never stored in this database: it waits.
        assert "1 memory in the recovery file waits for another database" in back.stderr
        waiting = [json.loads(line) for line in (home / "recovery.jsonl").read_text().splitlines()]
        assert [k["content"] for k in waiting] == ["the door code changed"]
        assert "s3cret-pass" not in (home / "recovery.jsonl").read_text()
        with Memory(embedder=fake_embedder(fake)) as memory:
            # The first exchange, the 2 kept for it (one of them the second exchange) and the new one.
            assert memory.count() == 4
            assert memory.count(session_id="c") == 2
    finally:
        server.release()
        server.destroy()


def test_a_long_lived_memory_stores_what_it_kept_once_the_database_is_back(
    tmp_path: Path, home: Path, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """The Python API keeps a memory while the database is down, and its next successful call stores it;
    a kept memory the database refuses stays in the file, said once, and never blocks the call."""
    from memagent.api import Memory
    from memagent.errors import KeptError
    from memagent.store import schema
    from memagent.store.database import Database
    from memagent.usecases.recovery import Kept, RecoveryFile

    server = EmbeddedPostgres(tmp_path / "external-postgres")
    url = server.acquire()
    try:
        with Database(Settings(), url=url) as db:
            schema.upgrade(db, embedding_dim=DIM)
        with Memory(
            home=str(home), database_url=url, embedder=fake_embedder(fake), namespace="api"
        ) as memory:
            memory.remember("written while the database is up")
            server.stop()
            with pytest.raises(KeptError) as kept:
                memory.remember("written while the database is down")
            assert kept.value.kept == home / "recovery.jsonl" and "cannot connect" in kept.value.reason
            # A memory the database will refuse (its namespace is reserved): it must not block the others.
            RecoveryFile(home).keep(Kept("*", "s", "refused", {}, datetime.now(UTC)))
            server.acquire()
            memory.remember("written once it is back")
            assert memory.count() == 3
            assert [m.content for m in memory.recent(limit=3)][-1] == "written while the database is up"
            waiting = RecoveryFile(home).waiting()
            assert [item.content for item in waiting] == ["refused"]
            memory.remember("and again")
            memory.remember("and once more")
            notices = [r.getMessage() for r in caplog.records if r.name == "memagent"]
            assert sum("Stored 1 memory kept in the recovery file" in n for n in notices) == 1
            assert sum("in the recovery file could not be stored yet" in n for n in notices) == 1, notices
    finally:
        server.release()
        server.destroy()


def test_a_schema_that_is_behind_is_an_answer_not_an_outage(embedded: EmbeddedPostgres, home: Path) -> None:
    """Only an unreachable database puts a memory in the recovery file; a schema to migrate is one line."""
    from tests.conftest import make_database

    url = make_database(embedded, "memagent_behind")
    env = {"MEMAGENT_HOME": str(home), "MEMAGENT_DATABASE_URL": url, "MEMAGENT_EMBEDDING_PROVIDER": "local"}
    result = runner.invoke(app, ["remember", "a memory for an unmigrated database"], env=env)
    assert result.exit_code == 3 and "alembic upgrade head" in result.stderr
    assert not (home / "recovery.jsonl").exists()


# -- kill -9 and concurrency --------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from memagent.api import Memory

    worker, count = sys.argv[1], int(sys.argv[2])
    with Memory() as memory:
        for i in range(count):
            memory.remember(f"worker {worker} memory {i}")
            memory.remember(f"shared memory {i % 10}", namespace="shared")  # every worker races for these
            print(i, flush=True)
    """
)


def writer_env(home: Path, fake: FakeOpenAI) -> dict[str, str]:
    return {
        **process_env(),
        "MEMAGENT_HOME": str(home),
        **provider_env(fake),
        "MEMAGENT_NAMESPACE": "writers",
    }


def count_rows(home: Path, namespace: str) -> tuple[int, int]:
    """(rows, distinct contents) in a namespace of the home's embedded database."""
    from memagent.store.database import Database

    with Database(Settings(home=home)) as db, db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT count(*), count(DISTINCT content) FROM memories WHERE namespace = :ns"),
            {"ns": namespace},
        ).one()
    return int(row[0]), int(row[1])


def test_eight_processes_store_exactly_their_memories(home: Path, fake: FakeOpenAI) -> None:
    env = writer_env(home, fake)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(n), "200"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
    assert count_rows(home, "writers") == (1600, 1600)
    assert count_rows(home, "shared") == (10, 10)  # identical content raced by 8 writers: stored once


def test_a_writer_killed_with_sigkill_leaves_a_consistent_database(home: Path, fake: FakeOpenAI) -> None:
    env = writer_env(home, fake)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, "k", "100000"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acknowledged = -1
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 50:
            break
    proc.kill()
    proc.wait()
    rows, distinct = count_rows(home, "writers")
    # Every acknowledged memory is there, at most the one in flight besides, and nothing twice.
    assert acknowledged + 1 <= rows <= acknowledged + 3 and rows == distinct
    after = subprocess.run(
        [sys.executable, "-m", "memagent", "remember", "after the crash"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert after.returncode == 0, after.stderr
    assert count_rows(home, "writers")[0] == rows + 1


class SeenThenRemoved(type(Path())):  # type: ignore[misc]
    """A path that was seen to exist just before another replay removed it (its exists() is stale)."""

    def exists(self, *args: Any, **kwargs: Any) -> bool:
        return True


def test_a_replay_does_not_trip_over_a_file_another_one_just_removed(
    engine_service: tuple[MemoryService, Any, str], tmp_path: Path
) -> None:
    """Threads sharing one Memory each replay the recovery file on their next call, and one replay removes
    the file once it is empty: another that saw the file a moment before finds nothing to do, it does not
    fail (an outside read saw remember raise FileNotFoundError there, after the memory was stored)."""
    from memagent.usecases.recovery import RecoveryFile

    service, _, _ = engine_service
    recovery = RecoveryFile(SeenThenRemoved(tmp_path))
    assert recovery.path.exists() and not Path(recovery.path).exists()
    replayed = recovery.replay(service, "here")
    assert replayed.stored == 0 and replayed.waiting == 0 and replayed.problem is None
