"""Export and import: JSON lines out, binary COPY in; idempotent, resumable, tolerant of bad lines."""

from __future__ import annotations

import base64
import codecs
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from memagent.cli.app import app
from memagent.store import pgcopy
from memagent.store.bulk import BulkRepository
from memagent.store.memories import NewMemory
from memagent.usecases.lines import count_lines, line_batches
from tests.conftest import memagent_command
from tests.fake_openai import FakeOpenAI, fake_embedding

runner = CliRunner()


def test_binary_copy_round_trips_every_type(connection: Connection) -> None:
    connection.execute(
        text("CREATE TEMP TABLE copy_check (words text, v vector, j jsonb, ts timestamptz, n text)")
    )
    vector = np.array([0.5, -1.25, 3.0e-8], dtype=np.float32)
    when = datetime(2023, 5, 8, 13, 56, 7, 123456, tzinfo=UTC)
    payload = pgcopy.encode(
        [("héllo ✓ עברית", vector, {"a": [1, "ü"]}, when, None)],
        ["text", "vector", "jsonb", "timestamptz", "text"],
    )
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.copy_expert("COPY copy_check FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload))
    row = connection.execute(text("SELECT words, v::text, j, ts, n FROM copy_check")).one()
    assert row.words == "héllo ✓ עברית"
    assert json.loads(row.v) == pytest.approx(vector.tolist())
    assert row.j == {"a": [1, "ü"]}
    assert row.ts == when
    assert row.n is None


def test_copy_add_keeps_identical_content_once(sessions: Callable[[], Session]) -> None:
    """New rows go straight in; a batch with a stored row falls back to the conflict-skipping path."""

    def memory(content: str) -> NewMemory:
        return NewMemory("copy-ns", "s", content, fake_embedding(content, 384), "fake-embed-384", {})

    with sessions() as session, session.begin():
        bulk = BulkRepository(session)
        assert bulk.copy_add([memory("one"), memory("two"), memory("one")]) == 2
        assert bulk.copy_add([memory("two"), memory("three"), memory("three")]) == 1
        assert bulk.copy_add([]) == 0
        rows = session.execute(
            text("SELECT content FROM memories WHERE namespace = 'copy-ns' ORDER BY id")
        ).scalars()
        assert list(rows) == ["one", "two", "three"]


@pytest.fixture
def ns(cli_env: dict[str, str]) -> str:
    return cli_env["MEMAGENT_NAMESPACE"]


def count(engine: Engine, namespace: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM memories WHERE namespace = :ns"), {"ns": namespace}
            ).scalar_one()
        )


def test_export_then_import_elsewhere_reuses_the_vectors(
    ns: str, engine: Engine, fake: FakeOpenAI, tmp_path: Path
) -> None:
    for i, content in enumerate(["alpha memory", "beta memory ✓", "gamma memory"]):
        runner.invoke(app, ["remember", content, "-s", f"s{i}", "--metadata", json.dumps({"i": i})])
    exported = runner.invoke(app, ["export"])
    assert exported.exit_code == 0, exported.output
    lines = exported.stdout.splitlines()
    assert len(lines) == 3 and "Exported 3 memories" in exported.stderr
    first = json.loads(lines[0])
    assert (
        first["content"] == "alpha memory" and first["session_id"] == "s0" and first["metadata"] == {"i": 0}
    )
    assert first["embedding_model"] == "fake-embed-384"
    vector = np.frombuffer(base64.b64decode(first["embedding"]), dtype="<f4")
    assert vector.shape == (384,) and vector == pytest.approx(fake_embedding("alpha memory", 384), abs=1e-6)

    dump = tmp_path / "memories.jsonl"
    dump.write_text(exported.stdout)
    target = f"cli-copy-{uuid.uuid4().hex[:8]}"
    fake.reset()
    loaded = runner.invoke(app, ["import", str(dump), "--namespace", target])
    assert loaded.exit_code == 0, loaded.output
    assert "added 3, skipped 0 already stored, embedded 0, failed 0" in loaded.stderr
    assert fake.embedding_requests() == []  # same model: the stored vectors were reused
    with engine.connect() as conn:
        original = conn.execute(
            text(
                "SELECT content, embedding::text, session_id, metadata, created_at FROM memories"
                " WHERE namespace = :ns ORDER BY content"
            ),
            {"ns": ns},
        ).all()
        copied = conn.execute(
            text(
                "SELECT content, embedding::text, session_id, metadata, created_at FROM memories"
                " WHERE namespace = :ns ORDER BY content"
            ),
            {"ns": target},
        ).all()
    assert original == copied  # exact vectors, sessions, metadata and dates

    again = runner.invoke(app, ["import", str(dump), "--namespace", target])
    assert "added 0, skipped 3 already stored" in again.stderr
    assert count(engine, target) == 3


def test_malformed_lines_are_reported_and_the_rest_loads(ns: str, engine: Engine, tmp_path: Path) -> None:
    dump = tmp_path / "mixed.jsonl"
    dump.write_bytes(
        b'{"content": "good one"}\n'
        b"not json at all\n"
        b"\n"
        b'{"content": ""}\n'
        b'{"content": "bad date", "created_at": "last tuesday"}\n'
        b'["a", "list"]\n'
        b'{"content": "bad vector", "embedding": [1, "x"]}\n'
        b'{"content": "bad base64", "embedding": "not base64!"}\n'
        b'{"content": "odd bytes", "embedding": "AAAAAAA="}\n'
        b'{"content": "nul \\u0000 inside"}\n'
        b"\xff\xfe invalid utf-8\n"
        b'{"content": "empty namespace", "namespace": ""}\n'
        b'{"content": "empty session", "session_id": ""}\n'
        b'{"content": "good two", "created_at": "2023-05-08T13:56:00+00:00",'
        b' "metadata": {"k": 1, "id": 123456789012345678901234567890, "x": [0.1, {"y": 2.5e-7}]}}\n'
    )
    result = runner.invoke(app, ["import", str(dump)])
    assert result.exit_code == 2
    assert "added 2, skipped 0 already stored, embedded 2, failed 11" in result.stderr
    for fragment in [
        "line 2: not valid JSON",
        "line 4: the content is empty",
        "line 5: created_at",
        "line 6: not a JSON object",
        "line 7: embedding is neither base64 float32 nor a list of numbers",
        "line 8: embedding is not valid base64",
        "line 9: embedding is not a whole number of float32 values",
        "line 10: the content contains NUL",
        "line 11: not valid UTF-8",
        "line 12: invalid namespace: namespace must not be empty",  # not the default namespace, silently
        "line 13: invalid session: session must not be empty",
    ]:
        assert fragment in result.stderr
    assert count(engine, ns) == 2
    with engine.connect() as conn:
        metadata = conn.execute(
            text("SELECT metadata FROM memories WHERE namespace = :ns AND content = 'good two'"), {"ns": ns}
        ).scalar_one()
    assert metadata == {"k": 1, "id": 123456789012345678901234567890, "x": [0.1, {"y": 2.5e-7}]}  # exact


def test_another_model_in_the_file_is_re_embedded_in_batches(
    ns: str, engine: Engine, fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMAGENT_EMBEDDING_BATCH_SIZE", "10")
    dump = tmp_path / "other-model.jsonl"
    with dump.open("w") as out:
        for i in range(25):
            out.write(
                json.dumps({"content": f"line {i}", "embedding_model": "other", "embedding": [1.0, 2.0]})
                + "\n"
            )
    result = runner.invoke(app, ["import", str(dump)])
    assert result.exit_code == 0, result.output
    assert "added 25" in result.stderr and "embedded 25" in result.stderr
    assert [len(r["body"]["input"]) for r in fake.embedding_requests()] == [10, 10, 5]
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT embedding::text FROM memories WHERE namespace = :ns AND content = 'line 3'"),
            {"ns": ns},
        ).scalar_one()
    assert json.loads(stored) == pytest.approx(fake_embedding("line 3", 384).tolist(), abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=40),
    final_newline=st.booleans(),
    per_batch=st.integers(min_value=1, max_value=7),
    block_size=st.sampled_from([1, 3, 64, 1 << 20]),
)
def test_a_file_is_read_in_batches_of_whole_lines_numbered_from_one(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    final_newline: bool,
    per_batch: int,
    block_size: int,
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()  # a final newline ends the last line; it does not start another
    batches = list(line_batches(io.BytesIO(data), per_batch, block_size=block_size))
    assert [line for _, batch in batches for line in batch] == expected
    with_bom = list(line_batches(io.BytesIO(codecs.BOM_UTF8 + data), per_batch, block_size=block_size))
    assert [bytes(line) for _, batch in with_bom for line in batch] == (expected or [])
    assert [first for first, _ in batches] == list(range(1, len(expected) + 1, per_batch))
    assert all(len(batch) == per_batch for _, batch in batches[:-1])
    path = tmp_path_factory.mktemp("lines") / "file.jsonl"
    path.write_bytes(data)
    assert count_lines(path) == len(expected)
    assert count_lines(path, stop_at=per_batch) == min(per_batch, len(expected))


def test_an_import_in_many_batches_reuses_skips_and_embeds_exactly(
    ns: str, engine: Engine, fake: FakeOpenAI, tmp_path: Path
) -> None:
    """Rows already stored, repeated lines and lines of another model, spread over batches of three."""
    runner.invoke(app, ["remember", "stored before"])
    fake.reset()

    def line(content: str, model: str = "fake-embed-384") -> str:
        vector = fake_embedding(content + " (file)", 384).astype("<f4").tobytes()
        record = {
            "content": content,
            "embedding_model": model,
            "embedding": base64.b64encode(vector).decode(),
        }
        return json.dumps(record) + "\n"

    dump = tmp_path / "mixed-batches.jsonl"
    dump.write_text(
        line("one")
        + line("two")
        + line("stored before")
        + line("one")  # batch 1 and the start of 2
        + line("three", model="other")
        + line("four")
        + line("two")  # a repeat across batches
        + line("five")
    )
    result = runner.invoke(app, ["import", str(dump), "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert "added 5, skipped 3 already stored, embedded 1, failed 0" in result.stderr
    assert [r["body"]["input"] for r in fake.embedding_requests()] == [["three"]]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT content, embedding::text FROM memories WHERE namespace = :ns"), {"ns": ns}
        ).all()
    stored: dict[str, str] = {content: vector for content, vector in rows}
    assert sorted(stored) == ["five", "four", "one", "stored before", "three", "two"]
    for content in ["one", "two", "four", "five"]:  # the file's vectors, exactly
        assert json.loads(stored[content]) == pytest.approx(
            fake_embedding(content + " (file)", 384).tolist(), abs=1e-6
        )
    assert json.loads(stored["three"]) == pytest.approx(fake_embedding("three", 384).tolist(), abs=1e-6)
    assert json.loads(stored["stored before"]) == pytest.approx(
        fake_embedding("stored before", 384).tolist(), abs=1e-6
    )


@pytest.fixture
def big_dump(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "big.jsonl"
    with path.open("w") as out:
        for i in range(3000):
            out.write(json.dumps({"content": f"bulk memory number {i}", "session_id": f"s{i % 7}"}) + "\n")
    yield path


def test_an_import_killed_halfway_resumes_without_duplicates(
    cli_env: dict[str, str], ns: str, engine: Engine, fake: FakeOpenAI, big_dump: Path
) -> None:
    env = {k: v for k, v in os.environ.items()} | cli_env | {"MEMAGENT_EMBEDDING_BATCH_SIZE": "100"}
    fake.latency = 0.15  # slow enough to be killed between batches
    proc = subprocess.Popen(
        [sys.executable, "-m", "memagent", "import", str(big_dump), "--batch-size", "1000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while count(engine, ns) < 1000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = count(engine, ns)
    assert 1000 <= before < 3000, "killed after the first batch and before the end"

    fake.latency = 0.0
    resumed = subprocess.run(
        [sys.executable, "-m", "memagent", "import", str(big_dump)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"added {3000 - before}, skipped {before} already stored" in resumed.stderr
    assert count(engine, ns) == 3000
    with engine.connect() as conn:
        distinct = conn.execute(
            text("SELECT count(DISTINCT content) FROM memories WHERE namespace = :ns"), {"ns": ns}
        ).scalar_one()
    assert distinct == 3000


def test_an_interrupted_import_says_what_it_stored_and_how_to_finish(
    cli_env: dict[str, str], ns: str, engine: Engine, fake: FakeOpenAI, big_dump: Path
) -> None:
    env = {k: v for k, v in os.environ.items()} | cli_env | {"MEMAGENT_EMBEDDING_BATCH_SIZE": "100"}
    # Ten seconds of batches left after the first: the Ctrl-C lands midway even on a busy machine.
    fake.latency = 0.4
    proc = subprocess.Popen(
        memagent_command("import", str(big_dump), "--batch-size", "500"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while count(engine, ns) < 500 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    said = re.search(r"Interrupted: (\d+) added and 0 skipped already stored in the batches", stderr)
    assert said is not None, stderr
    assert 500 <= int(said.group(1)) <= count(engine, ns) < 3000  # (a batch in flight may land after)
    assert "the same import again finishes it" in stderr and stderr.rstrip().endswith("interrupted.")


# -- what learning knows travels too ---------------------------------------------------------------------

_LEARNED = """
SELECT m.content, m.kind, m.importance, m.session_id, m.created_at, m.invalid_at, m.learned_at, m.expired_at,
       m.archived_at, m.extracted_at, m.embedding::text,
       (SELECT r.content FROM memories r WHERE r.id = m.superseded_by) AS replaced_by,
       ARRAY(SELECT s.content FROM memory_sources l JOIN memories s ON s.id = l.source_id
             WHERE l.memory_id = m.id ORDER BY 1) AS sources
FROM memories m WHERE m.namespace = :ns ORDER BY m.content"""


def learned_rows(engine: Engine, namespace: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(_LEARNED), {"ns": namespace})]


def test_export_import_carries_kinds_importance_validity_archiving_and_links(
    ns: str, engine: Engine, tmp_path: Path
) -> None:
    from memagent.bootstrap import open_service
    from memagent.config import get_settings

    with open_service(get_settings()) as memory:
        said = memory.remember_many(
            ["Priya: I work at Acme", "Priya: I moved to Globex", "We had lunch at noon"], session_id="c1"
        )
        acme, globex, lunch = (r.id for r in said)
        facts = memory.remember_many(
            ["Priya's employer is Acme", "Priya's employer is Globex"],
            session_id="c1",
            kind="fact",
            importance=[0.8, 0.9],
            sources=[[acme], [globex, acme]],
        )
        old_fact, new_fact = (r.id for r in facts)
    with engine.begin() as conn:  # what consolidation and compression leave behind
        conn.execute(
            text(
                "UPDATE memories SET expired_at = now(), invalid_at = '2026-11-30 10:00+00',"
                " superseded_by = :new WHERE id = :old"
            ),
            {"new": new_fact, "old": old_fact},
        )
        conn.execute(text("UPDATE memories SET archived_at = now() WHERE id = :id"), {"id": lunch})
        conn.execute(
            text("UPDATE memories SET extracted_at = now() WHERE id = ANY(:ids)"), {"ids": [acme, globex]}
        )
    dump = tmp_path / "learned.jsonl"
    dump.write_text(runner.invoke(app, ["export"]).stdout)
    by_content = {json.loads(line)["content"]: json.loads(line) for line in dump.read_text().splitlines()}
    assert by_content["Priya's employer is Acme"]["superseded_by"] == new_fact
    assert "id" not in by_content["We had lunch at noon"]  # nothing refers to it: no id to map

    target = f"cli-learned-{uuid.uuid4().hex[:8]}"
    try:
        loaded = runner.invoke(app, ["import", str(dump), "--namespace", target])
        assert loaded.exit_code == 0, loaded.output
        assert "Restored 3 links to sources and 1 replacement." in loaded.stderr
        original, copied = learned_rows(engine, ns), learned_rows(engine, target)
        assert copied == original
        kinds = {row[0]: (row[1], row[2], row[11], row[12]) for row in copied}
        assert kinds["Priya's employer is Acme"] == (
            "fact",
            pytest.approx(0.8),
            "Priya's employer is Globex",
            ["Priya: I work at Acme"],
        )
        assert next(row for row in copied if row[0] == "We had lunch at noon")[8] is not None  # archived
        again = runner.invoke(app, ["import", str(dump), "--namespace", target])  # resumable, nothing twice
        assert "added 0, skipped 5 already stored" in again.stderr
        assert learned_rows(engine, target) == original
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM memories WHERE namespace = :ns"), {"ns": target})


def test_older_files_import_as_exchanges_and_dangling_references_are_dropped(
    ns: str, engine: Engine, tmp_path: Path
) -> None:
    dump = tmp_path / "mixed.jsonl"
    lines = [
        {"content": "an exchange from an older export", "created_at": "2025-01-02T03:04:05+00:00"},
        {"content": "a fact whose source was not exported", "kind": "fact", "sources": [424242]},
        {"content": "a fact replaced by one not in the file", "kind": "fact", "superseded_by": 31337},
        {"content": "a bad kind", "kind": "opinion"},
        {"content": "a bad importance", "importance": 7},
    ]
    dump.write_text("".join(json.dumps(line) + "\n" for line in lines))
    loaded = runner.invoke(app, ["import", str(dump)])
    assert loaded.exit_code == 2  # two bad lines, reported; the rest is stored
    assert "added 3, skipped 0 already stored, embedded 3, failed 2" in loaded.stderr
    assert "dropped 2 naming a memory not in the file" in loaded.stderr
    assert "line 4: kind must be one of exchange, fact, summary, not 'opinion'" in loaded.stderr
    assert "line 5: importance must be a number between 0 and 1" in loaded.stderr
    rows = {row[0]: row for row in learned_rows(engine, ns)}
    old = rows["an exchange from an older export"]
    assert (old[1], old[2], old[5], old[7], old[8]) == ("exchange", 0.5, None, None, None)
    assert old[6] is not None  # learned by this import, as any write
    assert rows["a fact whose source was not exported"][1:3] == ("fact", 0.5)
    assert rows["a fact whose source was not exported"][12] == []
    assert rows["a fact replaced by one not in the file"][11] is None


def test_an_id_two_lines_carry_is_linked_to_neither(ns: str, engine: Engine, tmp_path: Path) -> None:
    """Two exports joined into one file may both carry id 1: both memories are stored, and a reference to
    1 is dropped and counted rather than linked to whichever line came first; an id carried twice by the
    same memory (a line repeated) is not ambiguous."""
    dump = tmp_path / "joined.jsonl"
    lines = [
        {"content": "Priya: I work at Acme", "id": 1},
        {"content": "Sam: I work at Initech", "id": 1},  # the second export's id 1
        {"content": "Priya's employer is Globex", "kind": "fact", "id": 2},
        {"content": "Priya's employer is Globex", "kind": "fact", "id": 2},  # repeated: the same memory
        {"content": "Priya's employer is Acme", "kind": "fact", "sources": [1], "superseded_by": 2},
    ]
    dump.write_text("".join(json.dumps(line) + "\n" for line in lines))
    loaded = runner.invoke(app, ["import", str(dump)])
    assert loaded.exit_code == 0, loaded.output
    assert "Restored 0 links to sources and 1 replacement" in loaded.stderr
    assert "dropped 1 naming an id two lines of the file carry." in loaded.stderr
    rows = {row[0]: row for row in learned_rows(engine, ns)}
    assert {"Priya: I work at Acme", "Sam: I work at Initech"} <= set(rows)  # both stored
    acme = rows["Priya's employer is Acme"]
    assert acme[12] == [] and acme[11] == "Priya's employer is Globex"
