"""The breaks an attack campaign found, one class each: out-of-range dates, import lines that fail in any
way, hostile text on screen and in the prompt, tiny vectors, odd CLI input, stale re-embedding staging."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from memagent.cli.app import app
from memagent.config import Settings
from memagent.errors import InputError
from memagent.usecases.service import MemoryService
from memagent.usecases.transfer import Transfer
from memagent.validation import MAX_DATE, MIN_DATE, clean_date
from tests.conftest import fake_embedder, process_env
from tests.fake_openai import Failure, FakeOpenAI

pytestmark = pytest.mark.both_drivers

runner = CliRunner()


def one_line(result: object) -> str:
    stderr = str(result.stderr)  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# -- 1. dates ------------------------------------------------------------------------------------------------


@given(
    st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))])
    )
)
@settings(max_examples=200, deadline=None)
def test_every_date_is_either_refused_in_one_line_or_readable_anywhere(when: datetime) -> None:
    try:
        accepted = clean_date(when)
    except InputError as exc:
        assert "out of range" in exc.message
        assert not MIN_DATE <= when.astimezone(UTC) <= MAX_DATE if when.year not in (1, 9999) else True
        return
    for hours in (-14, 0, 14):  # shown in any time zone without overflow
        accepted.astimezone(timezone(timedelta(hours=hours)))


def test_out_of_range_dates_are_refused_at_every_door_and_old_ones_still_read(
    connection: Connection, sessions: Callable[[], Session], fake: FakeOpenAI, tmp_path: Path
) -> None:
    memory = MemoryService(sessions, fake_embedder(fake), Settings(namespace="dates"))
    with pytest.raises(InputError, match="out of range"):
        memory.remember(
            "far future", created_at=datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14)))
        )
    with pytest.raises(InputError, match="out of range"):
        memory.count(before=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))
    memory.remember("an ordinary memory")
    # A row an older memagent (or someone with psql) stored: year 0. The database refuses new ones...
    with pytest.raises(Exception, match="ck_memories_created_at_range"), connection.begin_nested():
        connection.execute(
            text("UPDATE memories SET created_at = '0001-01-01 00:00:00+14' WHERE namespace = 'dates'")
        )
    # ...and one stored before that check existed is read as the nearest date memagent accepts.
    connection.execute(text("ALTER TABLE memories DROP CONSTRAINT ck_memories_created_at_range"))
    connection.execute(
        text("UPDATE memories SET created_at = '0001-01-01 00:00:00+14' WHERE namespace = 'dates'")
    )
    assert [m.created_at for m in memory.recent()] == [MIN_DATE]
    assert memory.recall("ordinary memory")[0].created_at == MIN_DATE
    exported = [json.loads(line) for line in Transfer(memory).export("dates")]
    assert [line["created_at"] for line in exported] == [MIN_DATE.isoformat()]


def test_one_bad_line_of_any_kind_is_that_lines_failure(
    cli_env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    lines = [json.dumps({"content": f"memory {i}", "session_id": "imp"}) for i in range(12)]
    lines[6] = '{"content": "too deep", "metadata": ' + '{"d": ' * 1000 + '"bottom"' + "}" * 1000 + "}"
    lines[8] = json.dumps({"content": "year zero", "created_at": "0001-01-01T00:00:00+14:00"})
    lines[9] = json.dumps({"content": "naive year one", "created_at": "0001-01-01T00:00:00"})
    lines[10] = json.dumps(
        {"content": "tiny", "embedding": [1e-42] * 384, "embedding_model": "fake-embed-384"}
    )
    dump = tmp_path / "bad.jsonl"
    dump.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["import", str(dump), "--batch-size", "5"])
    assert result.exit_code == 2, result.output
    assert "added 8" in result.stderr and "failed 4" in result.stderr
    assert "line 7: metadata is nested deeper than 64 levels" in result.stderr
    assert "line 9: the created_at 0001-01-01T00:00:00+14:00 is out of range" in result.stderr
    assert "line 10: the created_at" in result.stderr and "line 11: embedding" in result.stderr
    listed = runner.invoke(app, ["inspect", "--json", "--limit", "20"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 8


def test_an_import_with_the_provider_down_stores_the_lines_pending(
    cli_env: dict[str, str], fake: FakeOpenAI, tmp_path: Path
) -> None:
    runner.invoke(app, ["remember", "the database's model is recorded by this one"])
    dump = tmp_path / "plain.jsonl"
    dump.write_text("\n".join(json.dumps({"content": f"to embed later {i}"}) for i in range(3)) + "\n")
    fake.failures = [Failure(500, path="/embeddings")]
    result = runner.invoke(app, ["import", str(dump)])
    assert result.exit_code == 0, result.output
    assert "added 3" in result.stderr and "3 lines stored with the embedding pending" in result.stderr
    filled = runner.invoke(app, ["backfill"])
    assert filled.exit_code == 0 and "Embedded 3 pending memories" in filled.stderr


# -- 10. odd CLI input ---------------------------------------------------------------------------------------


def test_odd_command_lines_get_one_clear_line_and_exit_2(cli_env: dict[str, str]) -> None:
    env = process_env(**cli_env)
    invalid = subprocess.run(
        [sys.executable, "-m", "memagent", "remember", b"caf\xe9 au lait".decode("utf-8", "surrogateescape")],
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
    )
    assert invalid.returncode == 2 and "not valid UTF-8" in one_line(invalid)
    early = runner.invoke(app, ["purge", "--before", "0001-01-01", "--yes"])
    assert early.exit_code == 2 and "out of range" in one_line(early)
    nested = "[" * 5000 + "]" * 5000
    deep = runner.invoke(app, ["remember", "x", "--metadata", '{"a": ' + nested + "}"])
    assert deep.exit_code == 2 and "nested" in one_line(deep)


# -- 7, 8. hostile text on screen and in the prompt ---------------------------------------------------------

PIECES = [
    *"ab <>/:",
    "\n",
    "\r",
    "\x1b",
    "\x1b[2J",
    "\x07",
    "\x85",
    "\u2028",
    "\u2029",
    "\u202e",
    "\x9b",
    "\x0b",
    "\x1c",
]
HOSTILE = st.lists(st.sampled_from(PIECES), min_size=1, max_size=40).map("".join)


@given(HOSTILE)
@settings(max_examples=200, deadline=None)
def test_no_memory_text_can_start_a_line_of_the_prompt(text: str) -> None:
    from memagent.agent.prompt import build_prompt
    from memagent.records import RecalledMemory

    memory = RecalledMemory(1, "n", "s", f"start {text} end", datetime.now(UTC), "m")
    system = build_prompt("hello", [memory]).messages[0].content
    lines = system.splitlines()  # every Unicode line break counts
    opening = next(i for i, line in enumerate(lines) if line.startswith("<memories-"))
    entry = lines[opening + 1]
    assert lines[opening + 2].startswith("</memories-")  # the memory is exactly one line
    assert json.loads(entry)["text"] == f"start {text} end"  # and reads back exactly


@given(HOSTILE)
@settings(max_examples=100, deadline=None)
def test_tables_show_control_characters_as_escapes(text: str) -> None:
    from memagent.cli.render import visible

    shown = visible(text)
    assert not any(
        0x80 <= ord(c) <= 0x9F or (ord(c) < 0x20 and c not in "\n\t") or c == "\x7f" for c in shown
    )
    assert not any(c in shown for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_inspect_and_recall_tables_never_pass_escapes_to_the_terminal(cli_env: dict[str, str]) -> None:
    hostile = "clear \x1b[2J\x1b[31mred\u202eevil\x9bsecret"
    assert runner.invoke(app, ["remember", hostile]).exit_code == 0
    for args in (["inspect"], ["recall", "clear red evil"]):
        shown = runner.invoke(app, args).stdout
        assert "\x1b" not in shown and "\u202e" not in shown and "\x9b" not in shown
        assert "\\x1b[2J" in shown
    exact = runner.invoke(app, ["inspect", "--json"]).stdout
    assert json.loads(exact)[0]["content"] == hostile


def test_brackets_in_a_memory_a_query_a_namespace_or_a_setting_are_shown_as_text(
    cli_env: dict[str, str],
) -> None:
    # Rich reads `[...]` in a str as markup: `[/oops]` was an error that made the namespace's tables
    # unreadable, `[a:b]` and `[link=...]` vanished from what is shown.
    text = "x[i] [bold]b[/bold] [/oops] [link=http://evil.example]click[/link] ns [a:b] end"
    namespace = cli_env["MEMAGENT_NAMESPACE"] + "[/ns]"  # (cli-…: deleted after, as the fixture's)
    assert runner.invoke(app, ["remember", text, "--namespace", namespace]).exit_code == 0
    for args in (["inspect"], ["recall", "click [/q]"]):
        result = runner.invoke(app, [*args, "--namespace", namespace], env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        assert text in result.stdout
    assert namespace in runner.invoke(app, ["inspect", "--namespace", namespace]).stdout  # (its title)
    assert "click [/q]" in runner.invoke(app, ["recall", "click [/q]", "--namespace", namespace]).stdout
    shown = runner.invoke(app, ["config"], env={"MEMAGENT_NAMESPACE": "[/x]", "COLUMNS": "400"})
    assert shown.exit_code == 0 and "[/x]" in shown.stdout


# -- 5, 12, 14. secrets in URL parameters, chat with the database down, pgvector versions -------------------


def test_a_password_given_as_a_url_parameter_is_never_printed(cli_env: dict[str, str]) -> None:
    url = "postgresql://app@127.0.0.1:9/mem?password=param-secret-77&sslmode=disable"
    for args in (["config", "--json"], ["config"], ["inspect"], ["--debug", "inspect"]):
        result = runner.invoke(app, args, env={"MEMAGENT_DATABASE_URL": url})
        assert "param-secret-77" not in result.output, args
    shown = runner.invoke(app, ["config", "--json"], env={"MEMAGENT_DATABASE_URL": url}).stdout
    assert "password=***" in json.loads(shown)["database_url"]


def test_chat_with_the_database_down_at_start_answers_and_keeps_the_exchange(
    cli_env: dict[str, str], fake: FakeOpenAI, tmp_path: Path
) -> None:
    home = tmp_path / "chat-home"
    env = {
        "MEMAGENT_DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x",
        "MEMAGENT_HOME": str(home),
        "MEMAGENT_CHAT_MODEL": "m",
    }
    fake.chat_reply = "Hello without memories."
    result = runner.invoke(app, ["chat", "-m", "hello?"], env=env)
    assert result.exit_code == 3 and result.stdout.strip() == "Hello without memories."
    assert "this exchange is kept in" in result.stderr
    kept = [json.loads(line) for line in (home / "recovery.jsonl").read_text().splitlines()]
    assert [k["content"] for k in kept] == ["User: hello?\nAssistant: Hello without memories."]


def test_parallel_index_builds_only_on_a_pgvector_without_the_flaw() -> None:
    from memagent.store.hnsw import parallel_builds_safe

    assert not parallel_builds_safe("0.8.1") and not parallel_builds_safe("0.7.4")
    assert parallel_builds_safe("0.8.2") and parallel_builds_safe("0.8.6") and parallel_builds_safe("0.10.0")
    assert not parallel_builds_safe(None) and not parallel_builds_safe("dev")


# -- generated, not hand-picked: nesting depth and tiny vectors ----------------------------------------------


@given(st.integers(min_value=1, max_value=3000), st.sampled_from(["object", "list"]))
@settings(max_examples=60, deadline=None)
def test_metadata_of_any_depth_is_stored_or_refused_in_one_line(depth: int, kind: str) -> None:
    from memagent.validation import MAX_METADATA_DEPTH, clean_metadata

    nested: object = "leaf"
    for _ in range(depth - 1):
        nested = {"k": nested} if kind == "object" else [nested]
    metadata = {"top": nested}
    if depth <= MAX_METADATA_DEPTH:
        assert clean_metadata(metadata) == metadata
    else:
        with pytest.raises(InputError, match="nested deeper"):
            clean_metadata(metadata)


@given(st.floats(min_value=1e-45, max_value=1.0), st.integers(min_value=1, max_value=384))
@settings(max_examples=200, deadline=None)
def test_vectors_too_short_to_normalise_are_refused_everywhere(scale: float, nonzero: int) -> None:
    from memagent.errors import ProviderError
    from memagent.providers.vectors import check_vectors
    from memagent.usecases.importfile import parse_embedding
    from memagent.validation import MIN_VECTOR_NORM

    vector = np.zeros(384, dtype=np.float32)
    vector[:nonzero] = scale
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    if norm < MIN_VECTOR_NORM:
        with pytest.raises(InputError):
            parse_embedding(vector.tolist())
        with pytest.raises(ProviderError):
            check_vectors(vector[None, :], 1, 384, "m")
    else:
        assert parse_embedding(vector.tolist()).shape == (384,)
        assert check_vectors(vector[None, :], 1, 384, "m").shape == (1, 384)


@given(st.floats(min_value=1.0, max_value=3e38), st.integers(min_value=1, max_value=384))
@settings(max_examples=200, deadline=None)
def test_vectors_too_long_to_compare_are_refused_everywhere(scale: float, nonzero: int) -> None:
    # 384 values of 3e38 passed as finite, yet pgvector's float32 sums overflowed: every distance to it was 1.
    from memagent.errors import ProviderError
    from memagent.providers.vectors import check_vectors
    from memagent.usecases.importfile import parse_embedding
    from memagent.validation import MAX_VECTOR_NORM

    vector = np.zeros(384, dtype=np.float32)
    vector[:nonzero] = scale
    if float(np.linalg.norm(vector.astype(np.float64))) > MAX_VECTOR_NORM:
        with pytest.raises(InputError, match="too long"):
            parse_embedding(vector.tolist())
        with pytest.raises(ProviderError, match="too long"):
            check_vectors(vector[None, :], 1, 384, "m")
    else:
        assert parse_embedding(vector.tolist()).shape == (384,)
        assert check_vectors(vector[None, :], 1, 384, "m").shape == (1, 384)
