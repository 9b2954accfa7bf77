"""Bad input through the CLI: a clear one-line error or a safe store; never a traceback, never a secret."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from memagent.cli.app import app
from memagent.providers.embeddings import OPENAI_MAX_INPUT_BYTES
from tests.fake_openai import Failure, FakeOpenAI

runner = CliRunner()


def one_line_error(result: object, code: int = 2) -> str:
    out = str(getattr(result, "stderr", ""))
    assert getattr(result, "exit_code", None) == code, out
    assert len(out.strip().splitlines()) == 1, out
    assert "Traceback" not in out
    return out


awkward = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            "\x00",
            " \t\n",
            "🧠💾👩‍👩‍👧",
            "שלום עולם",
            "مرحبا بالعالم",
            "'); DROP TABLE memories; --",
            "\u202eevil",
            "%s %(x)s {}",
        ]
    ).flatmap(lambda core: st.builds(lambda a, b: a + core + b, st.text(max_size=20), st.text(max_size=20))),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text_in=awkward)
def test_remember_through_the_cli_stores_exactly_or_refuses_in_one_line(
    cli_env: dict[str, str], text_in: str
) -> None:
    assume(text_in != "-")  # (`-` reads stdin, as the README says)
    result = runner.invoke(app, ["remember", "--json", "--", text_in])
    stripped = text_in.strip()
    if not stripped or "\x00" in stripped:
        one_line_error(result)
        return
    assert result.exit_code == 0, result.output
    stored = json.loads(result.stdout)
    listed = runner.invoke(app, ["inspect", "--json", "--limit", "50"])
    contents = {m["id"]: m["content"] for m in json.loads(listed.stdout)}
    assert contents[stored["id"]] == stripped


def test_invalid_utf8_on_stdin_is_refused(cli_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["remember"], input=b"caf\xe9 au lait\n")
    assert "stdin is not valid UTF-8 (byte 3)" in one_line_error(result)


def test_a_megabyte_message_is_stored_whole_and_embedded_within_the_limit(
    cli_env: dict[str, str], engine: Engine, fake: FakeOpenAI
) -> None:
    words = random.Random(7).choices(["alpha", "béta", "gamma", "δέλτα", "🧠", "x" * 12], k=200_000)
    big = " ".join(f"{w}{i}" for i, w in enumerate(words))[: 1 << 20]  # a megabyte of distinct words
    big = big.strip()
    fake.reset()
    result = runner.invoke(app, ["remember"], input=big.encode("utf-8"))
    assert result.exit_code == 0, result.output
    assert f"Stored all {len(big)} characters; the embedding reads the first" in result.stderr
    sent = fake.embedding_requests()[0]["body"]["input"][0]
    assert len(sent.encode("utf-8")) <= OPENAI_MAX_INPUT_BYTES and big.startswith(sent)
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT content FROM memories WHERE namespace = :ns"), {"ns": cli_env["MEMAGENT_NAMESPACE"]}
        ).scalar_one()
    assert stored == big
    found = runner.invoke(app, ["recall", "gamma2", "--json", "--mode", "text"])
    assert found.exit_code == 0, found.output  # full-text search copes with it too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recall", "x", "--k", "0"], "k must be between 1 and 1000"),
        (["recall", "x", "--k", "1000000000"], "k must be between 1 and 1000"),
        (["recall", "x", "--k", "-3"], "k must be between 1 and 1000"),
        (["recall", "x", "--ef-search", "0"], "ef_search must be between 1 and 1000"),
        (["recall", "x", "--max-distance", "7"], "max distance must be between 0 and 2"),
        (["inspect", "--limit", "0"], "limit must be between 1 and 10000"),
        (["inspect", "--limit", "99999999"], "limit must be between 1 and 10000"),
        (["remember", "x", "--metadata", "{not json"], "--metadata is not valid JSON"),
        (["remember", "x", "--metadata", "[1, 2]"], "metadata must be a JSON object"),
        (["purge", "--before", "last tuesday", "--yes"], "--before"),
        (["purge", "--before", "2024-02-30", "--yes"], "--before"),
        (["recall", "x", "--namespace", "bad\x07name"], "invalid namespace"),
        (["import", "/no/such/file.jsonl"], "no such file"),
        (["import", "/tmp"], "/tmp is a folder, not a file"),
        (["export", "--namespace", "a", "--all-namespaces"], "not with --namespace"),
        (["import", "/etc/passwd", "--namespace", "*"], "namespace '*' is reserved"),
        (["remember", "x", "--session", ""], "session"),
        (["purge", "--session", "", "--yes"], "session must not be empty"),
        (["sql", "-c", "select 1", "--url"], "--url takes no value and goes alone"),
        (["sql", "--url", "postgresql://u:pw@h/x"], "--url takes no value and goes alone"),
        (["purge", "--all", "--session", "a", "--yes"], "--all is every memory in the namespace"),
    ],
)
def test_absurd_values_get_one_line(cli_env: dict[str, str], args: list[str], message: str) -> None:
    runner.invoke(app, ["remember", "something to recall"])
    assert message in one_line_error(runner.invoke(app, args))


def test_an_unknown_namespace_is_just_empty(cli_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["recall", "anything", "--namespace", "nobody-here"])
    assert result.exit_code == 0 and "No memories found." in result.stderr


def test_debug_tracebacks_never_show_secrets(cli_env: dict[str, str], fake: FakeOpenAI) -> None:
    url = "postgresql://memagent:hunter2-db-pass@127.0.0.1:9/memagent"
    db_down = runner.invoke(app, ["--debug", "recall", "x"], env={"MEMAGENT_DATABASE_URL": url})
    assert db_down.exit_code == 3 and "Traceback" in db_down.stderr
    assert "hunter2-db-pass" not in db_down.output

    runner.invoke(app, ["remember", "a memory so recall embeds its query"])
    fake.failures = [Failure(401, body={"error": {"message": f"Incorrect API key provided: {fake.api_key}"}})]
    rejected = runner.invoke(app, ["--debug", "recall", "x", "--mode", "vector"])
    assert rejected.exit_code == 5 and "Traceback" in rejected.stderr
    assert "rejected the API key" in rejected.stderr
    assert fake.api_key not in rejected.output

    shown = runner.invoke(app, ["config"], env={"MEMAGENT_DATABASE_URL": url})
    assert "hunter2-db-pass" not in shown.output and fake.api_key not in shown.output
