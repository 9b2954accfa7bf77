"""Opening memagent once, for the CLI, the Python API and every later front door.

settings → database (the embedded server when no URL is set; schema at head: migrated if embedded, else a
clear error) → embedder → catch-up (the vector index a killed import left out is rebuilt, memories kept in
the recovery file are stored). Nothing happens until the first `service()`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from memagent import bridge
from memagent.config import KNOWN_DIMENSIONS, LOCAL_MODEL, Settings, with_overrides
from memagent.providers.embeddings import Embedder, make_embedder
from memagent.store import hnsw, schema
from memagent.store.database import Database, Driver
from memagent.store.unit import UnitOfWork
from memagent.usecases.maintenance import IndexMaintenance
from memagent.usecases.recovery import RecoveryFile
from memagent.usecases.service import MemoryService

Notify = Callable[[str], None]


class App:
    """memagent's database and embedder, opened on first use; close() releases them (and the server)."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        notify: Notify | None = None,
        catch_up: bool = True,
        notes: bool = True,
        driver: Driver = "psycopg2",
    ):
        """catch_up: repair the index and replay the recovery file on opening (not for a look, like
        `memagent config`); notes: say once when memagent embeds with the database's model; driver:
        "asyncpg" for AsyncMemory (then used from its bridge, memagent.bridge)."""
        self.settings = settings
        self._driver: Driver = driver
        self._embedder = embedder
        self._notify = notify
        self._catch_up = catch_up
        self._notes = notes
        self._db: Database | None = None
        self._service: MemoryService | None = None
        self._lock = self._new_lock()

    def _new_lock(self) -> threading.Lock | bridge.LoopLock:
        # Opening and closing hold it while they wait for the database: over asyncpg, on the event loop.
        return bridge.LoopLock() if self._driver == "asyncpg" else threading.Lock()

    def service(self) -> MemoryService:
        """The MemoryService over the opened database (opening it on the first call)."""
        with self._lock:
            if self._service is None:
                self._service = self._open()
            return self._service

    def database(self) -> Database:
        """The opened database (opening memagent if needed)."""
        self.service()
        assert self._db is not None
        return self._db

    def _open(self) -> MemoryService:
        configured = self._embedder or make_embedder(self.settings)
        db = Database(self.settings, driver=self._driver).open()
        try:
            self._ensure_schema(db, configured.dim)
            unit = UnitOfWork(db.sessions)
            with unit() as store:
                space = store.space.get()
            embedder = configured
            if self._embedder is None and space is not None:
                embedder = embedder_for(self.settings, space, configured)
                if embedder is not configured:
                    self._say_once(
                        f"embedder:{db.describe()}:{space}:{configured.model}", switch_note(space, configured)
                    )
            rechoose = None
            if self._embedder is None:

                def rechoose(other: tuple[str, int]) -> Embedder:
                    return embedder_for(self.settings, other, configured)

            service = MemoryService(db.sessions, embedder, self.settings, unit=unit, rechoose=rechoose)
            isolation = unit.isolation()
            if not isolation.on and self._notify is not None:
                self._notify(f"Warning: namespace isolation is {isolation.describe()}")
            if not db.is_embedded:
                self._check_pgvector(unit)
            if self._catch_up:
                catch_up(service, db.describe(), self._notify)
        except BaseException:
            db.close()
            raise
        self._db = db
        return service

    def _ensure_schema(self, db: Database, dim: int) -> None:
        if db.driver == "psycopg2":
            schema.ensure_at_head(db, embedding_dim=dim)
        elif not schema.at_head(db):
            # Migrations run as Alembic's tested path does: on psycopg2, off the event loop.
            def migrate() -> None:
                with Database(self.settings, url=db.url, embedded=db.is_embedded) as twin:
                    schema.ensure_at_head(twin, embedding_dim=dim)

            bridge.blocking(migrate)

    def _check_pgvector(self, unit: UnitOfWork) -> None:
        """An external server with a pgvector that has a known flaw: build serially, and say so."""
        with unit(admin=True) as store:
            version = store.server().pgvector
        if version is not None and not hnsw.parallel_builds_safe(version) and self._notify is not None:
            self._notify(
                f"Warning: this server's pgvector {version} has CVE-2026-3172 (parallel HNSW index builds "
                "can leak data from other tables or crash the server): memagent builds its index serially "
                "on it. Upgrade pgvector to 0.8.2 or later."
            )

    def _say_once(self, key: str, text: str) -> None:
        """Tell the user something once per memagent home (a marker file remembers it was said)."""
        if self._notify is None or not self._notes:
            return
        marker = self.settings.home_path() / "notes" / hashlib.sha256(key.encode()).hexdigest()[:20]
        if marker.exists():
            return
        self._notify(text)
        marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker.touch()

    def close(self) -> None:
        """Release the database (and the embedded server, when this was its last user)."""
        with self._lock:
            if self._service is not None:
                self._service.indexing.settle()  # (before the database goes)
                release(self._service.embedder)
            if self._db is not None:
                self._db.close()
            self._db = None
            self._service = None

    def abandon(self) -> None:
        """Let go of a database opened on an event loop that has ended (AsyncMemory called from a new one):
        its connections cannot be closed from another loop and are dropped; the next call opens anew."""
        if self._db is not None:
            self._db.close(abandon=True)
        self._db = None
        self._service = None
        self._lock = self._new_lock()

    def __enter__(self) -> App:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def release(provider: object) -> None:
    """Let a provider close what belongs to an event loop that is ending (its async client), if it has any."""
    close = getattr(provider, "release", None)
    if callable(close):
        close()


def embedder_for(settings: Settings, space: tuple[str, int], configured: Embedder) -> Embedder:
    """The embedder for a database that holds `space`'s vectors.

    With MEMAGENT_EMBEDDING_PROVIDER left on auto and no model named, memagent embeds with the model the
    database was built with (a key set later for chat must not switch a local database to OpenAI). Any
    explicit choice stands, and a mismatch is then reported with the fixes that work.
    """
    if (configured.model, configured.dim) == space:
        return configured
    if settings.embedding_provider != "auto" or settings.embedding_model is not None:
        return configured
    model, dim = space
    if model in (LOCAL_MODEL, f"sentence-transformers/{LOCAL_MODEL}"):
        return make_embedder(with_overrides(settings, embedding_provider="local"))
    if configured.provider == "openai":  # an endpoint is configured: ask it for the database's model
        known = KNOWN_DIMENSIONS.get(model) == dim  # else the dimension must be asked for explicitly
        return make_embedder(
            with_overrides(settings, embedding_model=model, embedding_dim=None if known else dim)
        )
    return configured  # the database's model needs an endpoint that is not configured: the mismatch says so


def switch_note(space: tuple[str, int], configured: Embedder) -> str:
    """Said once when memagent embeds with the database's model rather than the one the settings suggest."""
    return (
        f"This database holds {space[0]} vectors, so memagent embeds with {space[0]} rather than "
        f"{configured.model}. To move it to {configured.model}: "
        f"memagent reembed --model {configured.model} --provider {configured.provider}"
    )


@contextmanager
def open_service(
    settings: Settings, *, embedder: Embedder | None = None, notify: Notify | None = None
) -> Iterator[MemoryService]:
    """Open memagent now and yield its MemoryService; released on exit."""
    with App(settings, embedder=embedder, notify=notify) as app:
        yield app.service()


def catch_up(service: MemoryService, target: str, notify: Notify | None = None) -> None:
    """What a run does first once the database answers: rebuild a vector index a killed import left out,
    and store the memories kept in the recovery file while the database was unreachable."""
    say = notify or (lambda _: None)
    if IndexMaintenance(service).repair():
        say("Rebuilt the vector index, which an interrupted import had left out.")
    recovery = RecoveryFile(service.settings.home_path())
    for line in recovery.replay(service, target).news(recovery.path):
        say(line)
