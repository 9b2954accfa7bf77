"""`memagent reembed`: stage new vectors while recall uses the old ones, then switch in one transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from memagent.cli.app import app
from memagent.config import Settings
from memagent.errors import EmbeddingMismatchError, InputError
from memagent.store import schema
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.usecases.reembed import Reembedder
from memagent.usecases.service import MemoryService
from tests.conftest import fake_embedder, make_database, schema_drift
from tests.fake_openai import Failure, FakeOpenAI

TOPICS = ["rust compilers", "alpine hiking", "sourdough baking", "jazz piano", "tide pools", "chess openings"]


@pytest.fixture
def db(embedded: EmbeddedPostgres) -> Iterator[Database]:
    """A database of its own: the switch retypes the vector column."""
    url = make_database(embedded, "memagent_reembed")
    with Database(Settings(), url=url) as database:
        schema.upgrade(database, "head", embedding_dim=384)
        yield database


def column_type(db: Database) -> str:
    with db.engine.connect() as conn:
        return str(
            conn.execute(
                text(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                    " WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
                )
            ).scalar_one()
        )


def test_reembed_stages_then_switches_in_one_go(db: Database, fake: FakeOpenAI) -> None:
    old = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace="r"))
    old.remember_many([f"notes about {topic} number {i}" for i in range(5) for topic in TOPICS])
    new_embedder = fake_embedder(fake, model="fake-embed-1536", dim=1536)
    mover = Reembedder(old, new_embedder, batch=10)
    assert mover.pending() == 30

    assert mover.stage_batch() == 10  # then the run "dies"
    assert mover.pending() == 20
    # Recall still works on the old vectors meanwhile, and writes go on.
    assert old.recall("rust compilers", k=1)[0].content.startswith("notes about rust compilers")
    old.remember("a memory written during the re-embedding about tide pools")
    assert column_type(db) == "vector(384)"

    moved = Reembedder(old, new_embedder, batch=10).run()  # a new run resumes
    assert moved == 31
    assert column_type(db) == "vector(1536)"
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_staging")).scalar_one() == 0
        assert conn.execute(text("SELECT DISTINCT embedding_model FROM memories")).scalars().all() == [
            "fake-embed-1536"
        ]
        assert conn.execute(text("SELECT model, dimension FROM embedding_space")).one() == (
            "fake-embed-1536",
            1536,
        )
        indexdef = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memories_embedding_hnsw'")
        ).scalar_one()
    assert "hnsw (embedding vector_cosine_ops)" in indexdef

    new = MemoryService(db.sessions, new_embedder, Settings(namespace="r"))
    found = new.recall("written during the re-embedding tide pools", k=1, mode="vector")
    assert found[0].content == "a memory written during the re-embedding about tide pools"
    with pytest.raises(EmbeddingMismatchError, match="fake-embed-1536"):
        old.recall("rust compilers")


def test_after_a_reembed_a_provider_outage_stores_pending_and_backfill_embeds(
    db: Database, fake: FakeOpenAI
) -> None:
    """The switch changes only the column's type: pending embeddings (NULL, revision 0005) still work."""
    old = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace="r"))
    old.remember_many([f"notes about {topic}" for topic in TOPICS])
    new_embedder = fake_embedder(fake, model="fake-embed-128", dim=128)
    assert Reembedder(old, new_embedder).run() == len(TOPICS)
    assert column_type(db) == "vector(128)"
    with db.engine.connect() as conn:
        assert schema_drift(conn) == []  # nullability, defaults and indexes as the revisions made them

    new = MemoryService(db.sessions, new_embedder, Settings(namespace="r"))
    fake.failures = [Failure(500, path="/embeddings")]
    stored = new.remember("the badge reader by the north door needs new batteries")
    assert stored.pending and stored.created
    assert new.pending() == 1
    assert new.backfill() == 1
    assert new.pending() == 0
    found = new.recall("badge reader batteries", k=1, mode="vector")
    assert found[0].content == "the badge reader by the north door needs new batteries"


def test_reembed_refuses_dimensions_hnsw_cannot_index(db: Database, fake: FakeOpenAI) -> None:
    old = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace="r"))
    with pytest.raises(InputError, match="at most 2000"):
        Reembedder(old, fake_embedder(fake, model="fake-embed-3072", dim=3072))


def test_reembed_command(db: Database, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    for name, value in {
        "MEMAGENT_DATABASE_URL": url,
        "MEMAGENT_OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": fake.api_key,
        "MEMAGENT_EMBEDDING_MODEL": "fake-embed-384",
        "MEMAGENT_EMBEDDING_DIM": "384",
        "MEMAGENT_NAMESPACE": "r",
        "MEMAGENT_MAX_RETRIES": "0",
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    for topic in TOPICS:
        assert runner.invoke(app, ["remember", f"all about {topic}"]).exit_code == 0

    refused = runner.invoke(app, ["reembed", "--model", "fake-embed-768", "--dim", "768"])
    assert refused.exit_code == 2 and "6 memories would be re-embedded" in refused.stderr
    assert column_type(db) == "vector(384)"

    done = runner.invoke(app, ["reembed", "--model", "fake-embed-768", "--dim", "768", "--yes"])
    assert done.exit_code == 0, done.output
    assert "Switched 6 memories to fake-embed-768 (768 dimensions)" in done.stderr
    assert "MEMAGENT_EMBEDDING_MODEL=fake-embed-768" in done.stderr
    assert column_type(db) == "vector(768)"

    stale = runner.invoke(app, ["recall", "jazz"])
    assert stale.exit_code == 4 and "fake-embed-768" in stale.stderr
    monkeypatch.setenv("MEMAGENT_EMBEDDING_MODEL", "fake-embed-768")
    monkeypatch.setenv("MEMAGENT_EMBEDDING_DIM", "768")
    fresh = runner.invoke(app, ["recall", "jazz piano", "--json", "-k", "1"])
    assert fresh.exit_code == 0 and "all about jazz piano" in fresh.stdout


def test_a_stopped_reembed_then_another_dimension_does_not_wedge(db: Database, fake: FakeOpenAI) -> None:
    """Staging is keyed by model and dimension: a new target discards what a stopped run staged."""
    old = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace="r"))
    old.remember_many([f"notes about {topic}" for topic in TOPICS])
    first = Reembedder(old, fake_embedder(fake, model="fake-embed-128", dim=128), batch=2)
    assert first.stage_batch() == 2  # then killed
    second = Reembedder(
        old, fake_embedder(fake, model="fake-embed-128", dim=64, send_dimensions=True), batch=2
    )
    assert second.pending() == len(TOPICS)  # the 128-dimension vectors are not this target's
    assert second.discard_stale() == 2
    assert second.run() == len(TOPICS)
    assert column_type(db) == "vector(64)"
    shorter = fake_embedder(fake, model="fake-embed-128", dim=64, send_dimensions=True)
    new = MemoryService(db.sessions, shorter, Settings(namespace="r"))
    assert new.recall("jazz piano", k=1, mode="vector")[0].content == "notes about jazz piano"
