"""The README's paths walked as a new user walks them: real processes, the real CLI, the loopback provider.

A managed PostgreSQL (an owner who is not a superuser and may not create roles), `alembic upgrade head` as
the README gives it, and the smaller things a first session runs into.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from memagent.store.embedded import EmbeddedPostgres
from tests.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


def run(env: dict[str, str], *args: str, tool: str = "memagent") -> subprocess.CompletedProcess[str]:
    """`memagent …` or `alembic …` in a process of its own, from the checkout (where alembic.ini is)."""
    return subprocess.run(
        [sys.executable, "-m", tool, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMAGENT_", "OPENAI_"))}
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
