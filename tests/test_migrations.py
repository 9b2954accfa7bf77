"""The schema comes only from Alembic: upgrade, downgrade, the at-head check, and the `alembic` command."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, inspect, text

from memagent.config import Settings, get_settings
from memagent.errors import SchemaError
from memagent.store import schema
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.usecases.service import MemoryService
from tests.conftest import DIM, make_database, process_env, schema_drift

ROOT = Path(__file__).resolve().parent.parent


def test_head_schema_has_table_and_indexes(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        insp = inspect(conn)
        columns = {c["name"] for c in insp.get_columns("memories")}
        assert columns == {
            "id",
            "namespace",
            "session_id",
            "content",
            "embedding",
            "embedding_model",
            "content_hash",
            "metadata",
            "created_at",
            "content_tsv",
            # revision 0013: memory that learns
            "kind",
            "importance",
            "invalid_at",
            "learned_at",
            "expired_at",
            "superseded_by",
            "archived_at",
            "extracted_at",
            # revision 0028: deferred indexing
            "indexed",
        }
        indexdef = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memories_embedding_hnsw'")
        ).scalar_one()
        assert "USING hnsw (embedding vector_cosine_ops)" in indexdef
        assert "m='16'" in indexdef and "ef_construction='128'" in indexdef  # revision 0036
        assert indexdef.endswith("WHERE indexed")  # revision 0028: memories not yet indexed, found apart
        unindexed = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memories_unindexed'")
        ).scalar_one()
        assert unindexed.endswith("(id) WHERE (NOT indexed)")
        assert (
            conn.execute(
                text(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
                )
            ).scalar_one()
            == "vector(384)"
        )
        assert "embedding_space" in insp.get_table_names()
        gin = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memories_ns_lexemes'")
        ).scalar_one()
        assert "USING gin (memagent_ns_lexemes((namespace)::text, content_tsv))" in gin  # revision 0017
        assert "WITH (fastupdate=off)" in gin  # no pending list for every search to read (revision 0016)
        # Every write runs the index's function as memagent_app: granted to it, not only through PUBLIC.
        acl = conn.execute(
            text("SELECT proacl::text FROM pg_proc WHERE oid = CAST(:f AS regprocedure)"),
            {"f": "memagent_ns_lexemes(text, tsvector)"},
        ).scalar_one()
        assert "memagent_app=X" in acl
        # Every store updates its words' statistics rows: vacuumed at 2% dead rows, not 20% (revision 0035).
        options = conn.execute(
            text("SELECT reloptions FROM pg_class WHERE oid = 'memory_term_stats'::regclass")
        ).scalar_one()
        assert options == ["autovacuum_vacuum_scale_factor=0.02"]
    engine.dispose()


def test_the_orm_models_agree_with_the_migrated_schema(db_url: str) -> None:
    """The models can never drift from the revisions: Alembic's comparison of the two finds nothing."""
    engine = create_engine(db_url)
    with engine.connect() as conn, conn.begin() as transaction:
        assert schema_drift(conn) == []
        # The comparison does see a drift like the one `reembed` once caused (the column made NOT NULL).
        conn.execute(text("ALTER TABLE memories ALTER COLUMN embedding SET NOT NULL"))
        drift = schema_drift(conn)
        assert [(d[0][0], d[0][2], d[0][3]) for d in drift] == [("modify_nullable", "memories", "embedding")]
        transaction.rollback()
    engine.dispose()


def test_a_column_an_earlier_reembed_made_not_null_is_repaired(embedded: EmbeddedPostgres) -> None:
    """Before revision 0008, `memagent reembed` re-added NOT NULL; upgrading such a database repairs it."""
    url = make_database(embedded, "memagent_repair")
    with Database(Settings(), url=url) as db:
        schema.upgrade(db, "0007", embedding_dim=384)
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE memories ALTER COLUMN embedding SET NOT NULL"))  # the old damage
        schema.upgrade(db, "head", embedding_dim=384)
        with db.engine.connect() as conn:
            assert schema_drift(conn) == []
            nullable = conn.execute(
                text(
                    "SELECT NOT attnotnull FROM pg_attribute"
                    " WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
                )
            ).scalar_one()
        assert nullable is True


def test_every_graph_grows_denser_from_revision_0036_and_back(embedded: EmbeddedPostgres) -> None:
    """0036 alters every HNSW index on memories (the table's, a namespace's own) to ef_construction 128, in
    place: nothing is rebuilt. One a long transaction is using is left as it is (recall would queue behind
    the wait). Downgraded, they go back to 64."""
    url = make_database(embedded, "memagent_denser")

    def ef_construction(conn: Connection) -> dict[str, str]:
        rows = conn.execute(
            text(
                "SELECT c.relname, opt FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid,"
                " unnest(c.reloptions) opt"
                " WHERE i.indrelid = 'memories'::regclass AND opt LIKE 'ef_construction=%'"
            )
        )
        return {name: option.split("=")[1] for name, option in rows}

    with Database(Settings(), url=url) as db:
        schema.upgrade(db, "0035", embedding_dim=384)
        with db.engine.begin() as conn:
            # As a database made before 0036 has it (revisions before it build with hnsw.py's parameters).
            conn.execute(text("ALTER INDEX ix_memories_embedding_hnsw SET (ef_construction = 64)"))
            conn.execute(
                text(
                    "CREATE INDEX ix_memories_hnsw_ns_0123456789abcdef ON memories USING hnsw"
                    " (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64) WHERE namespace = 'x'"
                )
            )
            built = conn.execute(
                text("SELECT oid FROM pg_class WHERE relname = 'ix_memories_hnsw_ns_0123456789abcdef'")
            )
            graph_oid = built.scalar_one()
            assert set(ef_construction(conn).values()) == {"64"}
        with db.engine.connect() as reader, reader.begin():
            reader.execute(text("SELECT count(*) FROM memories"))  # a long transaction holds every index
            started = time.monotonic()
            schema.upgrade(db, "head", embedding_dim=384)
            assert time.monotonic() - started < 5  # it gave up on them rather than stall every recall
            with db.engine.connect() as conn:
                assert set(ef_construction(conn).values()) == {"64"}  # (until their next build)
        schema.downgrade(db, "0035")
        schema.upgrade(db, "head", embedding_dim=384)
        with db.engine.connect() as conn:
            assert ef_construction(conn) == {
                "ix_memories_embedding_hnsw": "128",
                "ix_memories_hnsw_ns_0123456789abcdef": "128",
            }
            same = conn.execute(
                text("SELECT oid FROM pg_class WHERE relname = 'ix_memories_hnsw_ns_0123456789abcdef'")
            )
            assert same.scalar_one() == graph_oid  # altered, not rebuilt
        schema.downgrade(db, "0035")
        with db.engine.connect() as conn:
            assert set(ef_construction(conn).values()) == {"64"}


def test_the_head_constant_is_alembics_head() -> None:
    """Runs compare the database with schema.HEAD without loading Alembic: it must be the scripts' head."""
    from alembic.script import ScriptDirectory

    assert set(ScriptDirectory.from_config(schema.alembic_config()).get_heads()) == {schema.HEAD}


def test_upgrade_downgrade_upgrade(embedded: EmbeddedPostgres) -> None:
    url = make_database(embedded, "memagent_migrations")
    with Database(Settings(), url=url) as db:
        schema.upgrade(db, "head", embedding_dim=1536)
        assert schema.state(db)[0] == schema.state(db)[1]
        with db.engine.connect() as conn:
            assert (
                conn.execute(
                    text(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                        "attrelid = 'memories'::regclass AND attname = 'embedding'"
                    )
                ).scalar_one()
                == "vector(1536)"
            )
        schema.downgrade(db, "base")
        with db.engine.connect() as conn:
            assert "memories" not in inspect(conn).get_table_names()
        assert schema.state(db)[0] == set()
        schema.upgrade(db, "head", embedding_dim=384)
        schema.ensure_at_head(db)  # at head: no error


def test_external_database_behind_head_gets_a_clear_message(embedded: EmbeddedPostgres) -> None:
    url = make_database(embedded, "memagent_empty")
    settings = get_settings(database_url=url)
    with Database(settings) as db, pytest.raises(SchemaError, match="alembic upgrade head"):
        schema.ensure_at_head(db)


def test_alembic_command_line_with_a_plain_postgresql_url(embedded: EmbeddedPostgres) -> None:
    url = make_database(embedded, "memagent_alembic_cli").replace("postgresql+psycopg2://", "postgresql://")
    env = process_env()
    env |= {"MEMAGENT_DATABASE_URL": url, "MEMAGENT_EMBEDDING_PROVIDER": "local"}
    alembic = [sys.executable, "-m", "alembic"]
    up = subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    current = subprocess.run([*alembic, "current"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert f"{schema.HEAD} (head)" in current.stdout
    down = subprocess.run([*alembic, "downgrade", "base"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as conn:
        assert "memories" not in inspect(conn).get_table_names()
    engine.dispose()


def test_an_embedding_is_kept_in_its_row(service: MemoryService, connection: Connection) -> None:
    # A 384-dimension vector (1.5 kB) beside 600 characters passed PostgreSQL's default 2 kB threshold and
    # went to the TOAST table (three more page reads per vector read); revision 0012 keeps it in the row.
    assert connection.execute(
        text("SELECT reloptions FROM pg_class WHERE oid = 'memories'::regclass")
    ).scalar_one() == ["toast_tuple_target=8160"]
    content = " ".join(f"the {i}th lantern on the pier was repainted in autumn" for i in range(12))
    assert len(content) > 600
    stored = text(
        "SELECT pg_column_size(embedding) AS size, pg_column_toast_chunk_id(embedding) AS chunk "
        "FROM memories WHERE namespace = 'test' AND content = :c"
    )
    service.remember(content)
    row = connection.execute(stored, {"c": content}).one()
    assert row.size >= 4 * DIM and row.chunk is None  # in line, not a TOAST pointer
    # What the setting changes: with PostgreSQL's default the same row's vector goes out of line.
    connection.execute(text("ALTER TABLE memories RESET (toast_tuple_target)"))  # rolled back after the test
    service.remember(content + " again")
    assert connection.execute(stored, {"c": content + " again"}).one().chunk is not None
