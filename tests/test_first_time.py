"""The README's paths walked as a new user walks them: real processes, the real CLI, the loopback provider.

A managed PostgreSQL (an owner who is not a superuser and may not create roles), `alembic upgrade head` as
the README gives it, and the smaller things a first session runs into.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from memagent import Memory
from memagent.config import Settings
from memagent.store.embedded import EmbeddedPostgres
from tests.conftest import fake_embedder, needs_local_model, process_env, provider_env
from tests.fake_openai import Failure, FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


def run(env: dict[str, str], *args: str, tool: str = "memagent") -> subprocess.CompletedProcess[str]:
    """`memagent …` or `alembic …` in a process of its own, from the checkout (where alembic.ini is)."""
    return subprocess.run(
        [sys.executable, "-m", tool, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = process_env()
    return env | extra


@pytest.fixture
def managed(home: Path, fake: FakeOpenAI) -> Iterator[tuple[dict[str, str], EmbeddedPostgres]]:
    """A fresh cluster standing in for a managed PostgreSQL: the database belongs to `owner`, who is
    neither a superuser nor allowed to create roles; memagent logs in as owner."""
    cluster = EmbeddedPostgres(home / "managed-cluster")
    cluster.acquire()
    admin = create_engine(cluster.url(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE ROLE owner LOGIN NOSUPERUSER NOCREATEROLE"))
        conn.execute(text("CREATE DATABASE shop OWNER owner"))
    admin.dispose()
    url = cluster.url(database="shop").replace("postgres@", "owner@")
    env = clean_env(
        MEMAGENT_HOME=str(home),
        MEMAGENT_DATABASE_URL=url,
        MEMAGENT_OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY=fake.api_key,
        MEMAGENT_EMBEDDING_MODEL="fake-embed-384",
        MEMAGENT_EMBEDDING_DIM="384",
        MEMAGENT_MAX_RETRIES="0",
    )
    yield env, cluster
    cluster.release()
    cluster.destroy()


def as_superuser(cluster: EmbeddedPostgres, database: str, *statements: str) -> None:
    engine = create_engine(cluster.url(database=database), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_managed_postgresql_is_told_the_truth_and_how_to_turn_isolation_on(
    managed: tuple[dict[str, str], EmbeddedPostgres],
) -> None:
    env, cluster = managed
    # pgvector needs a superuser: both commands the README gives say so, in the same one line.
    migrate = run(env, "migrate")
    assert migrate.returncode == 3
    line = one_error_line(migrate)
    assert "may not create the pgvector extension" in line and "CREATE EXTENSION vector;" in line
    alembic = run(env, "upgrade", "head", tool="alembic")
    assert alembic.returncode == 3 and one_error_line(alembic) == line

    as_superuser(cluster, "shop", "CREATE EXTENSION vector")
    migrated = run(env, "upgrade", "head", tool="alembic")
    assert migrated.returncode == 0, migrated.stderr
    # The owner may not create memagent_app: the migration says isolation is off and what fixes it.
    fix = 'CREATE ROLE memagent_app NOLOGIN NOBYPASSRLS; GRANT memagent_app TO "owner";'
    assert "namespace isolation is off" in migrated.stderr and fix in migrated.stderr
    again = run(env, "migrate")
    assert again.returncode == 0 and "Namespace isolation is off" in again.stderr and fix in again.stderr

    stored = run(env, "remember", "the shop opens at nine")
    assert stored.returncode == 0, stored.stderr
    assert "Warning: namespace isolation is off" in stored.stderr
    shown = json.loads(run(env, "config", "--json").stdout)
    assert shown["namespace isolation"].startswith("off:") and fix in shown["namespace isolation"]

    # The administrator runs the statements; the owner migrates again (granting the tables): isolation on.
    as_superuser(cluster, "shop", *fix.replace('"owner"', "owner").split("; "))
    fixed = run(env, "migrate")
    assert fixed.returncode == 0 and "isolation" not in fixed.stderr
    shown = json.loads(run(env, "config", "--json").stdout)
    assert shown["namespace isolation"].startswith("on:")
    recalled = run(env, "recall", "when does the shop open", "--json")
    assert recalled.returncode == 0 and "isolation" not in recalled.stderr
    assert json.loads(recalled.stdout)[0]["content"] == "the shop opens at nine"
    # The role is in force: a unit of work that names no namespace sees nothing.
    engine = create_engine(env["MEMAGENT_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE memagent_app"))
        assert conn.execute(text("SELECT count(*) FROM memories")).scalar_one() == 0
    engine.dispose()


def test_alembic_and_migrate_print_the_same_one_line_for_a_closed_port(home: Path) -> None:
    env = clean_env(MEMAGENT_HOME=str(home), MEMAGENT_DATABASE_URL="postgresql://u:pw-secret-1@127.0.0.1:9/x")
    migrate = run(env, "migrate")
    alembic = run(env, "upgrade", "head", tool="alembic")
    assert migrate.returncode == alembic.returncode == 3
    line = one_error_line(migrate)
    assert "cannot connect to PostgreSQL at postgresql+psycopg2://u:***@127.0.0.1:9/x" in line
    assert one_error_line(alembic) == line
    assert "pw-secret-1" not in migrate.stderr + alembic.stderr


PRIYA = "My name is Priya and I'm building a Rust compiler for embedded targets"


@needs_local_model
def test_from_the_local_model_to_an_openai_key(home: Path, fake: FakeOpenAI) -> None:
    """The README's try-it stores with the local model; its Chat section then sets a key. The key serves
    chat; embeddings stay with the model the database holds, and memagent says once how to move."""
    local = clean_env(MEMAGENT_HOME=str(home))
    assert run(local, "remember", PRIYA).returncode == 0

    keyed = local | {
        "OPENAI_API_KEY": fake.api_key,
        "OPENAI_BASE_URL": fake.base_url,
        "MEMAGENT_MAX_RETRIES": "0",
    }
    fake.chat_reply = "You are building a Rust compiler."
    first = run(keyed, "chat", "-m", "what project am I working on?")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == fake.chat_reply
    assert fake.embedding_requests() == []  # embedded locally, not by the provider the key points to
    assert "Rust compiler for embedded targets" in fake.reply_requests()[-1]["body"]["messages"][0]["content"]
    note = "memagent reembed --model text-embedding-3-small --provider openai"
    assert "This database holds all-MiniLM-L6-v2 vectors" in first.stderr and note in first.stderr
    second = run(keyed, "chat", "-m", "and what is my name?")
    assert second.returncode == 0 and "This database holds" not in second.stderr  # said once

    # Naming the provider explicitly is a choice memagent keeps; the error names fixes that work.
    explicit = run(keyed | {"MEMAGENT_EMBEDDING_PROVIDER": "openai"}, "recall", "compiler")
    assert explicit.returncode == 4
    hint = one_error_line(explicit)
    assert "Set MEMAGENT_EMBEDDING_PROVIDER=local" in hint and note in hint
    followed = run(keyed | {"MEMAGENT_EMBEDDING_PROVIDER": "local"}, "recall", "compiler", "--json")
    assert followed.returncode == 0 and PRIYA in [m["content"] for m in json.loads(followed.stdout)]


def test_a_mismatch_hint_followed_literally_works(home: Path, fake: FakeOpenAI) -> None:
    """A database built with one OpenAI-compatible model, used with another named explicitly."""
    provider = clean_env(
        MEMAGENT_HOME=str(home),
        MEMAGENT_OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY=fake.api_key,
        MEMAGENT_MAX_RETRIES="0",
    )
    built = provider | {"MEMAGENT_EMBEDDING_MODEL": "fake-embed-256", "MEMAGENT_EMBEDDING_DIM": "256"}
    assert run(built, "remember", "the tide turns at six").returncode == 0
    other = provider | {"MEMAGENT_EMBEDDING_MODEL": "fake-embed-384", "MEMAGENT_EMBEDDING_DIM": "384"}
    refused = run(other, "recall", "tide")
    assert refused.returncode == 4
    hint = one_error_line(refused)
    expected = "MEMAGENT_EMBEDDING_MODEL=fake-embed-256 and MEMAGENT_EMBEDDING_DIM=256"
    assert expected in hint and "memagent reembed --model fake-embed-384 --provider openai --dim 384" in hint
    followed = provider | {"MEMAGENT_EMBEDDING_MODEL": "fake-embed-256", "MEMAGENT_EMBEDDING_DIM": "256"}
    assert (
        json.loads(run(followed, "recall", "tide", "--json").stdout)[0]["content"] == "the tide turns at six"
    )
    moved = run(
        other, "reembed", "--model", "fake-embed-384", "--provider", "openai", "--dim", "384", "--yes"
    )
    assert moved.returncode == 0, moved.stderr
    assert json.loads(run(other, "recall", "tide", "--json").stdout)[0]["content"] == "the tide turns at six"


def test_chat_resumes_a_session_with_its_turns_and_one_shot_shows_what_it_was_asked(
    home: Path, fake: FakeOpenAI
) -> None:
    env = clean_env(MEMAGENT_HOME=str(home), MEMAGENT_MAX_RETRIES="0", **provider_env(fake))
    fake.chat_reply = "Teal is a fine colour."
    assert run(env, "chat", "--session", "s1", "-m", "My favourite colour is teal").returncode == 0
    fake.chat_reply = "You said teal."
    resumed = run(env, "chat", "--session", "s1", "-m", "What did I just tell you?", "--show-memories")
    assert resumed.returncode == 0, resumed.stderr
    messages = fake.reply_requests()[-1]["body"]["messages"]
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "My favourite colour is teal"),
        ("assistant", "Teal is a fine colour."),
        ("user", "What did I just tell you?"),
    ]
    assert resumed.stdout.strip() == "You said teal."  # memories shown on stderr, not mixed into the reply
    assert "(no memories recalled)" in resumed.stderr  # the one memory is already in the conversation

    fake.failures = [Failure(500, path="/embeddings")]
    degraded = run(env, "chat", "-m", "what colour did I like?")
    assert degraded.returncode == 0
    assert "memories recalled by full-text search only" in degraded.stderr


def test_python_api_takes_a_chat_model_name(db_url: str, fake: FakeOpenAI) -> None:
    with Memory(
        database_url=db_url,
        namespace=f"api-{uuid.uuid4().hex[:8]}",
        embedder=fake_embedder(fake),
        chat_base_url=fake.base_url,
        chat_api_key=fake.api_key,
        chat_model="llama3.2",
        max_retries=0,
    ) as memory:
        turn = memory.chat("hello there")
        assert turn.reply == fake.chat_reply
        assert fake.reply_requests()[-1]["body"]["model"] == "llama3.2"
        memory.purge(everything=True)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["export", "-o", "/nonexistent/folder/x.jsonl"], {}, "cannot write /nonexistent/folder/x.jsonl"),
        (["inspect"], {"MEMAGENT_DATABASE_URL": "mysql://u:pw-secret-2@h/db"}, "must be a PostgreSQL URL"),
        (["inspect"], {"MEMAGENT_DATABASE_URL": "not a url pw-secret-2"}, "this is not a URL"),
        # an @ left unescaped in the password: the driver would print the rest of it as the host
        (
            ["inspect"],
            {"MEMAGENT_DATABASE_URL": "postgresql://u:p@pw-secret-2@127.0.0.1:9/db"},
            "has an @ in its user name or password; escape it as %40",
        ),
        (["inspect"], {"MEMAGENT_DATABASE_URL": "postgresql://u:p/q@pw-secret-2@127.0.0.1:9/db"}, "as %40"),
    ],
)
def test_smaller_first_time_errors_are_one_line_exit_2(
    home: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = run(clean_env(MEMAGENT_HOME=str(home), MEMAGENT_EMBEDDING_PROVIDER="local", **env), *args)
    assert result.returncode == 2 and message in one_error_line(result)
    assert "pw-secret-2" not in result.stderr


def test_help_and_config_read_right(home: Path) -> None:
    env = clean_env(MEMAGENT_HOME=str(home), MEMAGENT_EMBEDDING_PROVIDER="local", MEMAGENT_TOP_K="7")
    for command in ("remember", "recall", "chat", "export", "import", "purge"):
        shown = run(env, command, "--help")
        assert shown.returncode == 0 and "<bool>" not in shown.stdout
    assert "-m, --metadata" not in run(env, "remember", "--help").stdout  # -m is chat's --message
    assert "-m, --message" in run(env, "chat", "--help").stdout
    config = json.loads(run(env, "config", "--json").stdout)
    assert config["top_k"] == 7 and config["max_distance"] is None and config["hybrid_text_weight"] == 1.5
    assert config["pgvector"] == "0.8.6" and config["postgresql"].startswith("18.")


def test_sql_opens_psql_on_the_embedded_server_and_the_table_says_what_ranks(
    home: Path, fake: FakeOpenAI
) -> None:
    env = clean_env(MEMAGENT_HOME=str(home), **provider_env(fake))
    assert run(env, "remember", "the tutorial's memory", "--namespace", "left").returncode == 0
    assert run(env, "remember", "another namespace's memory", "--namespace", "right").returncode == 0
    query = "SELECT namespace, left(content, 60) AS content FROM memories ORDER BY id"
    shown = run(env, "sql", "-c", query)
    assert shown.returncode == 0, shown.stderr
    assert "the tutorial's memory" in shown.stdout and "another namespace's memory" in shown.stdout
    assert "(2 rows)" in shown.stdout
    assert not EmbeddedPostgres(home).paths.clients.exists() or not any(
        EmbeddedPostgres(home).paths.clients.iterdir()
    )  # released afterwards
    failed = run(env, "sql", "-c", "SELECT 1/0")
    assert failed.returncode != 0 and "division by zero" in failed.stderr

    table = run(env, "recall", "tutorial memory", "--namespace", "left")
    assert "ranked by fused rank score" in table.stdout and "score" in table.stdout


def test_secrets_in_urls_stay_out_of_output_and_stored_data(
    cli_env: dict[str, str], fake: FakeOpenAI, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from memagent.cli.app import app
    from memagent.config import Settings
    from memagent.store.database import Database

    # psql gets the password in its environment, never in its arguments; `sql --url` never prints it.
    uri, password = Database(Settings(), url="postgresql://alice:pw-in-url-1@db.example:5432/mem").libpq()
    assert "pw-in-url-1" not in uri and password == "pw-in-url-1" and uri.startswith("postgresql://alice@")

    runner = CliRunner()
    monkeypatch.setenv(
        "MEMAGENT_CHAT_BASE_URL", "http://user:tok3n-secret@127.0.0.1:9/v1?api-key=azur3-secret"
    )
    monkeypatch.setenv("MEMAGENT_CHAT_MODEL", "m")
    turn = runner.invoke(app, ["chat", "-m", "hello"])
    assert turn.exit_code == 5 and "cannot reach the chat provider" in turn.stderr
    stored = json.dumps(json.loads(runner.invoke(app, ["inspect", "--json"]).stdout))
    shown = runner.invoke(app, ["config", "--json"]).stdout
    for output in (turn.output, stored, shown):
        assert "tok3n-secret" not in output and "azur3-secret" not in output


def test_a_failed_export_keeps_the_earlier_file(home: Path, tmp_path: Path) -> None:
    earlier = tmp_path / "backup.jsonl"
    earlier.write_text('{"content": "an earlier backup"}\n')
    dead = clean_env(MEMAGENT_HOME=str(home), MEMAGENT_DATABASE_URL="postgresql://u:p@127.0.0.1:9/x")
    assert run(dead, "export", "-o", str(earlier)).returncode == 3
    assert earlier.read_text() == '{"content": "an earlier backup"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["backup.jsonl"]  # no partial file left behind


def test_naming_the_bundled_model_with_a_key_set_means_the_local_embedder() -> None:
    from memagent.config import get_settings

    spec = get_settings(
        openai_api_key="sk-some-key-123456", embedding_model="all-MiniLM-L6-v2"
    ).embedding_spec()
    assert (spec.provider, spec.model, spec.dim) == ("local", "all-MiniLM-L6-v2", 384)


def test_a_rejected_login_is_an_answer_not_an_outage(embedded: EmbeddedPostgres, home: Path) -> None:
    """A login the server refuses is not kept in the recovery file to be retried forever."""
    url = embedded.url(database="postgres").replace("postgres@", "nobody_here@")
    result = run(clean_env(MEMAGENT_HOME=str(home), MEMAGENT_DATABASE_URL=url), "remember", "x")
    assert result.returncode == 3 and "nobody_here" in result.stderr and "kept in" not in result.stderr
    assert not (home / "recovery.jsonl").exists()


def test_a_long_lived_process_follows_a_reembed_run_elsewhere(
    embedded: EmbeddedPostgres, fake: FakeOpenAI
) -> None:
    """With the provider on auto, a Memory opened before another process moved the database to another
    model follows it, instead of failing every call until it is restarted."""
    from memagent.store import schema
    from memagent.store.database import Database
    from memagent.usecases.reembed import Reembedder
    from memagent.usecases.service import MemoryService
    from tests.conftest import make_database

    url = make_database(embedded, "memagent_follow")
    with Database(Settings(), url=url) as db:
        schema.upgrade(db, embedding_dim=384)
        MemoryService(db.sessions, fake_embedder(fake), Settings(namespace="f")).remember("the first memory")
    with Memory(
        namespace="f",
        max_retries=0,
        database_url=url,
        openai_base_url=fake.base_url,
        openai_api_key=fake.api_key,
    ) as memory:
        assert memory.recall("first memory")[0].content == "the first memory"  # the database's fake-embed-384
        with Database(Settings(), url=url) as db:  # elsewhere: another process moves the database
            other = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace="f"))
            Reembedder(other, fake_embedder(fake, model="fake-embed-128", dim=128)).run()
        memory.remember("a memory after the move")
        assert memory.recall("after the move", k=1)[0].content == "a memory after the move"
        assert fake.embedding_requests()[-1]["body"]["model"] == "fake-embed-128"
