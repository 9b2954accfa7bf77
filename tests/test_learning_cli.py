"""Learning through its front doors: a chat turn, the CLI (extract, facts, history, remember --extract) and
the Python API, with a scripted model on the loopback server."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from memagent import Memory
from memagent.cli.app import app
from memagent.errors import ConfigError
from memagent.usecases.chat import ChatAgent
from memagent.usecases.service import MemoryService
from tests.conftest import fake_chat, fake_embedder
from tests.fake_openai import FakeOpenAI
from tests.learning_script import EXTRACT, Script, decision, records, system

runner = CliRunner()


chat_model = fake_chat


def test_a_chat_turn_learns_the_facts_of_its_exchange(service: MemoryService, fake: FakeOpenAI) -> None:
    script = Script(fake)
    script.facts["Rust"] = [{"text": "Priya is building a Rust compiler", "importance": 0.8}]
    fake.chat_reply = "Good luck with the compiler!"
    agent = ChatAgent(lambda: service, chat_model(fake), service.settings, session_id="c1")
    result = agent.turn("I'm Priya and I build a Rust compiler")
    assert result.reply == "Good luck with the compiler!" and result.stored is not None
    assert result.learned is not None and len(result.learned.added) == 1
    sent = next(r["body"] for r in fake.chat_requests() if EXTRACT in system(r["body"]))
    assert "Good luck with the compiler!" in records(sent)[0]["text"]  # the whole exchange, as data
    fact = service.recall("Rust compiler", kinds=["fact"], k=1)[0]
    assert fact.sources == (result.stored.id,)
    # The next turn recalls the fact, and its memory block says it is one.
    second = agent.turn("What am I building?")
    assert "Priya is building a Rust compiler" in second.system_prompt


def test_a_chat_turn_whose_learning_fails_is_still_answered_and_kept(
    service: MemoryService, fake: FakeOpenAI
) -> None:
    fake.chat_reply = "Hello!"  # whole replies too: not JSON, so extraction fails twice
    agent = ChatAgent(lambda: service, chat_model(fake), service.settings, session_id="c2")
    result = agent.turn("hi there, I like tea")
    assert result.reply == "Hello!" and result.stored is not None
    assert result.learned is not None and result.learned.failed[0][0] == result.stored.id
    assert service.count() == 1  # stored, waiting for `memagent extract`


def test_extraction_can_be_turned_off(service: MemoryService, fake: FakeOpenAI) -> None:
    settings = service.settings.model_copy(update={"extract": False})
    agent = ChatAgent(lambda: service, chat_model(fake), settings, session_id="c3")
    assert agent.turn("I like tea").learned is None
    assert len(fake.chat_requests()) == 1  # the reply only


def test_cli_extract_facts_and_history(cli_env: dict[str, str], fake: FakeOpenAI, engine: Engine) -> None:
    script = Script(fake)
    assert runner.invoke(app, ["remember", "User: I live in Berlin"]).exit_code == 0
    assert runner.invoke(app, ["remember", "User: I love tea"]).exit_code == 0
    script.facts["Berlin"] = [{"text": "Priya lives in Berlin", "importance": 0.7}]
    script.facts["tea"] = [{"text": "Priya loves tea", "importance": 0.3}]
    done = runner.invoke(app, ["extract"])
    assert done.exit_code == 0, done.output
    assert "Learnt from 2 exchanges: 2 facts added." in done.stderr
    listed = json.loads(runner.invoke(app, ["facts", "--json"]).stdout)
    assert {f["content"] for f in listed} == {"Priya lives in Berlin", "Priya loves tea"}
    berlin = next(f["id"] for f in listed if "Berlin" in f["content"])

    script.facts["Paris"] = [{"text": "Priya lives in Paris", "importance": 0.7}]
    script.decide = lambda new, shown: [decision(1, "update", berlin, "moved to Paris")]
    stored = runner.invoke(app, ["remember", "--extract", "--json", "User: we moved to Paris"])
    assert stored.exit_code == 0, stored.output
    learned = json.loads(stored.stdout)["learned"]
    assert learned["updated"] == 1 and len(learned["added"]) == 1
    assert "1 fact added, 1 updated" in stored.stderr
    now = {f["content"] for f in json.loads(runner.invoke(app, ["facts", "--json"]).stdout)}
    assert now == {"Priya lives in Paris", "Priya loves tea"}

    shown = runner.invoke(app, ["history", str(berlin)])
    assert shown.exit_code == 0, shown.output
    assert "Priya lives in Berlin" in shown.stdout and "Priya lives in Paris" in shown.stdout
    assert f"update {berlin} -> {learned['added'][0]}: moved to Paris" in shown.stdout
    chain = json.loads(runner.invoke(app, ["history", str(berlin), "--json"]).stdout)["chain"]
    assert [c["id"] for c in chain] == [berlin, learned["added"][0]] and chain[0]["expired_at"] is not None
    assert "Nothing" not in runner.invoke(app, ["extract"]).stderr
    assert "No exchanges wait for extraction." in runner.invoke(app, ["extract"]).stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["history", "999999999"], "no memory 999999999"),
        (["history", "99999999999999999999"], "whole number from 1 to"),
        (["history", "abc"], "abc"),
        (["facts", "--as-of", "yesterday"], "--as-of"),
        (["extract", "--limit", "0"], "limit"),
        (["facts", "--limit", "0"], "limit"),
    ],
)
def test_cli_learning_bad_input_is_one_line(cli_env: dict[str, str], args: list[str], says: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and says in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.output


def test_without_a_chat_model_extraction_is_skipped_and_nothing_is_lost(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI
) -> None:
    # Embeddings from their own endpoint; no chat endpoint or key at all.
    monkeypatch.setenv("MEMAGENT_EMBEDDING_BASE_URL", fake.base_url)
    monkeypatch.setenv("MEMAGENT_EMBEDDING_API_KEY", fake.api_key)
    for name in ("OPENAI_API_KEY", "MEMAGENT_OPENAI_BASE_URL"):
        monkeypatch.delenv(name)
    stored = runner.invoke(app, ["remember", "--extract", "User: I live in Berlin"])
    assert stored.exit_code == 0, stored.output
    assert "Facts not extracted: no chat model is configured" in stored.stderr
    assert runner.invoke(app, ["inspect", "--json"]).stdout.count("Berlin") == 1
    refused = runner.invoke(app, ["extract"])
    assert refused.exit_code == 2 and "no chat model is configured" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0


def test_memory_api_learns(db_url: str, fake: FakeOpenAI, engine: Engine) -> None:
    namespace = f"cli-api-{uuid.uuid4().hex[:8]}"
    script = Script(fake)
    script.facts["Berlin"] = [{"text": "Priya lives in Berlin", "importance": 0.7}]
    try:
        with Memory(
            database_url=db_url,
            namespace=namespace,
            embedder=fake_embedder(fake),
            chat_model=chat_model(fake),
        ) as memory:
            stored = memory.remember("User: I live in Berlin", extract=True)
            assert stored.learned is not None and len(stored.learned.added) == 1
            facts = memory.facts()
            assert [f.content for f in facts] == ["Priya lives in Berlin"]
            assert memory.history(facts[0].id).entries[0].sources == (stored.id,)
            memory.remember("User: I love tea")
            script.facts["tea"] = [{"text": "Priya loves tea", "importance": 0.3}]
            assert len(memory.extract().added) == 1
        with Memory(database_url=db_url, namespace=namespace, embedder=fake_embedder(fake)) as plain:
            with pytest.raises(ConfigError):
                plain.remember("User: no model here", extract=True)
            assert plain.count() == 4  # 2 exchanges, 2 facts: refused before storing a third exchange
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace = :ns"), {"ns": namespace})


def test_cli_remember_extract_says_when_its_facts_wait(cli_env: dict[str, str], fake: FakeOpenAI) -> None:
    fake.chat_replies = ["not JSON", "still not JSON"]
    result = runner.invoke(app, ["remember", "--extract", "User: I like tea"])
    assert result.exit_code == 5  # stored (the first line), its facts waiting (the second)
    assert "Remembered as memory" in result.stderr and "Facts not learnt from 1 exchange" in result.stderr
    assert "errors.pydantic.dev" not in result.stderr
    assert runner.invoke(app, ["inspect", "--json"]).stdout.count("I like tea") == 1


def test_the_interactive_loop_learns_on_a_worker_and_waits_for_it_at_the_end(
    service: MemoryService, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reply comes first; the exchange's facts are learnt while the user types, and the loop does not
    leave before they are."""
    import io

    from rich.console import Console

    from memagent.cli.chat import interactive
    from memagent.usecases.history import facts

    script = Script(fake)
    script.facts["Rust"] = [{"text": "Priya is building a Rust compiler", "importance": 0.8}]
    fake.chat_reply = "Good luck!"
    agent = ChatAgent(lambda: service, chat_model(fake), service.settings, session_id="bg")
    lines = iter(["I build a Rust compiler", "quit"])
    interactive(agent, show=False, read=lambda _prompt: next(lines), out=Console(file=io.StringIO()))
    assert [f.content for f in facts(service)] == ["Priya is building a Rust compiler"]
    assert "(Learnt from 1 exchange: 1 fact added.)" in capsys.readouterr().err
