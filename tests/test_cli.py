"""The CLI through Typer's CliRunner: output, exit codes, and the rows it leaves in the database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from memagent.cli.app import app
from tests.fake_openai import Failure, FakeOpenAI

runner = CliRunner()


def rows(engine: Engine, namespace: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [
            (r.content, r.session_id)
            for r in conn.execute(
                text("SELECT content, session_id FROM memories WHERE namespace = :ns ORDER BY id"),
                {"ns": namespace},
            )
        ]


def test_remember_recall_inspect(cli_env: dict[str, str], engine: Engine) -> None:
    ns = cli_env["MEMAGENT_NAMESPACE"]
    result = runner.invoke(
        app, ["remember", "My name is Priya and I'm building a Rust compiler", "-s", "chat-1"]
    )
    assert result.exit_code == 0, result.output
    assert "Remembered as memory" in result.stderr
    runner.invoke(app, ["remember", "I enjoy long walks on the beach"])
    assert rows(engine, ns) == [
        ("My name is Priya and I'm building a Rust compiler", "chat-1"),
        ("I enjoy long walks on the beach", "default"),
    ]

    recalled = runner.invoke(app, ["recall", "which compiler is Priya building?"])
    assert recalled.exit_code == 0, recalled.output
    out = recalled.stdout
    assert out.index("Rust compiler") < out.index("beach")
    assert "similarity" in out and "chat-1" in out

    as_json = runner.invoke(app, ["recall", "which compiler is Priya building?", "--json", "-k", "1"])
    data = json.loads(as_json.stdout)
    assert len(data) == 1
    assert data[0]["session_id"] == "chat-1"
    assert 0 < data[0]["similarity"] <= 1

    listed = runner.invoke(app, ["inspect", "--limit", "1", "--json"])
    assert [m["content"] for m in json.loads(listed.stdout)] == ["I enjoy long walks on the beach"]
    table = runner.invoke(app, ["inspect"])
    assert "2 newest of 2 memories" in table.stdout


def test_tables_show_the_kind_when_not_all_are_exchanges(cli_env: dict[str, str], engine: Engine) -> None:
    ns = cli_env["MEMAGENT_NAMESPACE"]
    runner.invoke(app, ["remember", "Priya said she is building a Rust compiler"])
    runner.invoke(app, ["remember", "Priya builds a Rust compiler for embedded targets"])
    before = runner.invoke(app, ["recall", "Priya compiler"]).stdout
    assert "kind" not in before and "exchange" not in before  # exchanges alone: the table as it was
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE memories SET kind = 'fact' WHERE namespace = :ns AND content LIKE '%embedded%'"),
            {"ns": ns},
        )
    for args in (["recall", "Priya compiler"], ["inspect"]):
        table = runner.invoke(app, args).stdout
        header = next(line for line in table.splitlines() if "date" in line)
        assert "kind" in header, args
        fact_line = next(line for line in table.splitlines() if "embedded" in line)
        said_line = next(line for line in table.splitlines() if "she is building" in line)
        assert "fact" in fact_line and "exchange" in said_line, args


def test_remember_reads_stdin_and_dedupes(cli_env: dict[str, str], engine: Engine) -> None:
    ns = cli_env["MEMAGENT_NAMESPACE"]
    assert runner.invoke(app, ["remember"], input="piped memory\n").exit_code == 0
    again = runner.invoke(app, ["remember", "-"], input="piped memory")
    assert "Already remembered" in again.stderr
    assert rows(engine, ns) == [("piped memory", "default")]


def test_remember_with_metadata(cli_env: dict[str, str], engine: Engine) -> None:
    result = runner.invoke(app, ["remember", "tagged", "--metadata", '{"source": "cli"}', "--json"])
    assert json.loads(result.stdout)["created"] is True
    with engine.connect() as conn:
        meta = conn.execute(
            text("SELECT metadata FROM memories WHERE namespace = :ns"), {"ns": cli_env["MEMAGENT_NAMESPACE"]}
        ).scalar_one()
    assert meta == {"source": "cli"}


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["remember", "   "], None, "the text is empty"),
        (["remember"], b"\xff\xfe broken", "not valid UTF-8"),
        (["remember", "x", "--metadata", "{nope"], None, "--metadata is not valid JSON"),
        (["remember", "x", "--metadata", "[1, 2]"], None, "metadata must be a JSON object"),
        (["recall", "x", "-k", "0"], None, "k must be between"),
        (["inspect", "--limit", "-3"], None, "limit must be between"),
        (["purge", "--before", "last tuesday", "--yes"], None, "is not a date"),
        (["purge"], None, "say what to purge"),
        (["recall", "walks", "--kind", "note"], None, "kind must be one of exchange, fact, summary"),
        (["recall", "walks", "--as-of", "last tuesday"], None, "--as-of 'last tuesday' is not a date"),
    ],
)
def test_bad_input_is_one_red_line(
    cli_env: dict[str, str], engine: Engine, args: list[str], stdin: bytes | None, message: str
) -> None:
    result = runner.invoke(app, args, input=stdin)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert rows(engine, cli_env["MEMAGENT_NAMESPACE"]) == []


def test_debug_shows_the_traceback(cli_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["--debug", "remember", "  "])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_provider_failure_keeps_the_memory_pending(
    cli_env: dict[str, str], engine: Engine, fake: FakeOpenAI
) -> None:
    fake.failures = [Failure(500)]
    result = runner.invoke(app, ["remember", "lost?"])
    assert result.exit_code == 0
    assert "Stored with its embedding pending (the embeddings provider answered HTTP 500" in result.stderr
    assert len(rows(engine, cli_env["MEMAGENT_NAMESPACE"])) == 1


def test_purge_asks_and_counts(cli_env: dict[str, str], engine: Engine) -> None:
    ns = cli_env["MEMAGENT_NAMESPACE"]
    for text_, session in [("alpha", "a"), ("beta", "b"), ("gamma", "b")]:
        runner.invoke(app, ["remember", text_, "-s", session])

    refused = runner.invoke(app, ["purge", "--session", "b"])  # no terminal, no --yes
    assert refused.exit_code == 2 and "2 memories would be deleted" in refused.stderr
    assert len(rows(engine, ns)) == 3

    done = runner.invoke(app, ["purge", "--session", "b", "--yes"])
    assert done.exit_code == 0 and "Deleted 2 memories" in done.stderr
    assert rows(engine, ns) == [("alpha", "a")]

    future = runner.invoke(app, ["purge", "--before", "2999-01-01", "--yes"])
    assert "Deleted 1 memory from" in future.stderr
    assert rows(engine, ns) == []
    assert "Nothing to purge" in runner.invoke(app, ["purge", "--all", "--yes"]).stderr


def test_config_masks_secrets(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", "postgresql://app:hunter2-secret@db.example:5432/mem")
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert "hunter2-secret" not in result.output and cli_env["OPENAI_API_KEY"] not in result.output
    assert data["database_url"] == "postgresql+psycopg2://app:***@db.example:5432/mem"
    assert data["openai_api_key"] == "**** (set)"
    assert data["namespace"] == cli_env["MEMAGENT_NAMESPACE"]
    table = runner.invoke(app, ["config"])
    assert "OPENAI_API_KEY" in table.stdout and "hunter2-secret" not in table.output


def test_invalid_setting_is_one_line(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_TOP_K", "lots")
    result = runner.invoke(app, ["recall", "x"])
    assert result.exit_code == 2
    assert "MEMAGENT_TOP_K" in result.stderr


def test_unreachable_database_is_one_line_without_password(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", "postgresql://app:hunter2-secret@127.0.0.1:9/mem")
    result = runner.invoke(app, ["inspect"])
    assert result.exit_code == 3
    assert "cannot connect to PostgreSQL at postgresql+psycopg2://app:***@127.0.0.1:9/mem" in result.stderr
    assert "hunter2-secret" not in result.output


def test_help_works_without_database_or_key() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("remember", "recall", "inspect", "purge", "config"):
        assert command in result.stdout


def test_a_malformed_database_url_never_echoes_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", "postgresql://app:hunter2-secret@host:notaport/db")
    monkeypatch.setenv("MEMAGENT_EMBEDDING_PROVIDER", "local")
    result = runner.invoke(app, ["inspect"])
    assert result.exit_code == 2
    assert "MEMAGENT_DATABASE_URL is not a valid database URL" in result.stderr
    assert "hunter2-secret" not in result.output


def test_an_unexpected_error_is_one_redacted_line(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from memagent.usecases.service import MemoryService

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"boom with {cli_env['OPENAI_API_KEY']} inside\nsecond line")

    monkeypatch.setattr(MemoryService, "recent", broken)
    result = runner.invoke(app, ["inspect"])
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == "Error: unexpected RuntimeError: boom with *** inside (run with --debug for the traceback)."
    )


def test_redact_masks_keys_and_url_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    from memagent.redact import redact

    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdef123456")
    text = redact("key sk-live-abcdef123456 and postgresql://u:p%40ss@h/db and https://x:y@z")
    assert text == "key *** and postgresql://u:***@h/db and https://x:***@z"
