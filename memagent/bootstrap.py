"""Opening memagent once, for the CLI, the Python API and every later front door.

settings → database (the embedded server when no URL is set; schema at head: migrated if embedded, else a
clear error) → embedder → catch-up (the vector index a killed import left out is rebuilt, memories kept in
the recovery file are stored). Nothing happens until the first `service()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from memagent.config import Settings
from memagent.providers.embeddings import Embedder, make_embedder
from memagent.store import schema
from memagent.store.database import Database
from memagent.usecases.maintenance import IndexMaintenance
from memagent.usecases.recovery import RecoveryFile
from memagent.usecases.service import MemoryService
from memagent.wording import memories

Notify = Callable[[str], None]


class App:
    """memagent's database and embedder, opened on first use; close() releases them (and the server)."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, notify: Notify | None = None):
        self.settings = settings
        self._embedder = embedder
        self._notify = notify
        self._db: Database | None = None
        self._service: MemoryService | None = None
        self._lock = threading.Lock()

    def service(self) -> MemoryService:
        """The MemoryService over the opened database (opening it on the first call)."""
        with self._lock:
            if self._service is None:
                self._service = self._open()
            return self._service

    def _open(self) -> MemoryService:
        embedder = self._embedder or make_embedder(self.settings)
        db = Database(self.settings).open()
        try:
            schema.ensure_at_head(db, embedding_dim=embedder.dim)
            service = MemoryService(db.sessions, embedder, self.settings)
            isolation = service.unit.isolation()
            if not isolation.on and self._notify is not None:
                self._notify(f"Warning: namespace isolation is {isolation.describe()}")
            catch_up(service, self._notify)
        except BaseException:
            db.close()
            raise
        self._db = db
        return service

    def close(self) -> None:
        """Release the database (and the embedded server, when this was its last user)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None
            self._service = None

    def __enter__(self) -> App:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextmanager
def open_service(
    settings: Settings, *, embedder: Embedder | None = None, notify: Notify | None = None
) -> Iterator[MemoryService]:
    """Open memagent now and yield its MemoryService; released on exit."""
    with App(settings, embedder=embedder, notify=notify) as app:
        yield app.service()


def catch_up(service: MemoryService, notify: Notify | None = None) -> None:
    """What a run does first once the database answers: rebuild a vector index a killed import left out,
    and store the memories kept in the recovery file while the database was unreachable."""
    say = notify or (lambda _: None)
    if IndexMaintenance(service).repair():
        say("Rebuilt the vector index, which an interrupted import had left out.")
    replayed = RecoveryFile(service.settings.home_path()).replay(service)
    if replayed:
        say(f"Stored {memories(replayed)} kept in the recovery file while the database was unreachable.")
