"""The unit of work: one transaction confined to one namespace by row-level security, and its repositories."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from memagent.store.archive import ArchiveRepository
from memagent.store.bulk import BulkRepository
from memagent.store.database import RECALL_THREADS
from memagent.store.db_errors import translate_errors, unreachable
from memagent.store.hnsw import IndexRepository
from memagent.store.items import ItemRepository
from memagent.store.lifecycle import LifecycleRepository
from memagent.store.liveness import unchecked
from memagent.store.memories import MemoryRepository
from memagent.store.prepared import Preparing, run_prepared
from memagent.store.roles import APP_ROLE, Isolation, isolation
from memagent.store.search import driver_sql, run_in, settings_sql, settings_values
from memagent.store.server import ServerFacts, facts
from memagent.store.space import SpaceRepository
from memagent.store.staging import StagingRepository


class Store:
    """The repositories of one unit of work, all over its session (built on first use)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @cached_property
    def memories(self) -> MemoryRepository:
        """Memories: store, search, list, count, purge, pending embeddings."""
        return MemoryRepository(self._session)

    @cached_property
    def items(self) -> ItemRepository:
        """Key-value items (memories with a key): find, delete and list them by key and namespace."""
        return ItemRepository(self._session)

    @cached_property
    def lifecycle(self) -> LifecycleRepository:
        """Learning: exchanges waiting for extraction, facts' validity, the events history."""
        return LifecycleRepository(self._session)

    @cached_property
    def archive(self) -> ArchiveRepository:
        """Compression: old exchanges by session, archiving them into a summary, archived memories."""
        return ArchiveRepository(self._session)

    @cached_property
    def space(self) -> SpaceRepository:
        """The embedding space the database holds."""
        return SpaceRepository(self._session)

    @cached_property
    def index(self) -> IndexRepository:
        """The HNSW index."""
        return IndexRepository(self._session)

    @cached_property
    def bulk(self) -> BulkRepository:
        """Bulk reads and COPY loads."""
        return BulkRepository(self._session)

    @cached_property
    def staging(self) -> StagingRepository:
        """The re-embedding's staging table."""
        return StagingRepository(self._session)

    def server(self) -> ServerFacts:
        """PostgreSQL's and pgvector's versions and the schema revision."""
        return facts(self._session)

    def isolation(self) -> Isolation:
        """Whether this login's units of work can run as memagent_app."""
        return isolation(self._session)


class _Aside:
    """The process's recall threads (RECALL_THREADS of them), for every unit of work: made on first use, and
    made again in a forked child (which has none of its parent's threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: tuple[ThreadPoolExecutor, threading.Semaphore] | None = None
        self._hooked = False

    def _forked(self) -> None:
        self._lock = threading.Lock()  # (another thread may have held it at the fork)
        self._made = None

    def submit(self, work: Callable[[], list[Any]]) -> Future[list[Any]] | None:
        """`work` on a recall thread; None when all are busy (or the interpreter is shutting down)."""
        with self._lock:
            if not self._hooked:
                os.register_at_fork(after_in_child=self._forked)
                self._hooked = True
            if self._made is None:
                threads = ThreadPoolExecutor(max_workers=RECALL_THREADS, thread_name_prefix="memagent-recall")
                self._made = (threads, threading.Semaphore(RECALL_THREADS))
            threads, free = self._made
        if not free.acquire(blocking=False):
            return None
        once = threading.Lock()

        def release() -> None:  # once: submit can fail after queueing the job, which may run later
            if once.acquire(blocking=False):
                free.release()

        def job() -> list[Any]:
            try:
                return work()
            finally:
                release()

        try:
            return threads.submit(job)
        except RuntimeError:  # the interpreter is shutting down (or no thread could start)
            release()
            return None
        except BaseException:  # (Ctrl-C in submit: the slot is not lost)
            release()
            raise


_ASIDE = _Aside()


class UnitOfWork:
    """Opens units of work over a session factory; remembers whether this login may take the app role."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions
        self._isolation: Isolation | None = None  # whether this login can run as memagent_app (once known)
        self._bind: Engine | Connection | None = None  # what the sessions are bound to (once known)

    @contextmanager
    def __call__(self, namespace: str | None = None, *, admin: bool = False) -> Iterator[Store]:
        """One transaction: committed on success, rolled back on error.

        The transaction sees one namespace: it runs as the role memagent_app under row-level security
        (revision 0006) with memagent.namespace set, so even a query without a namespace filter reads and
        writes that namespace only. memagent.validation.ALL_NAMESPACES opens every namespace (export of all,
        import, backfill); None opens none. admin: schema work (index builds, the re-embedding switch, COPY)
        as the login role.
        """
        session = self._sessions()
        with translate_errors(), session, session.begin():
            if not admin:
                self._isolate(session, namespace)
            yield Store(session)
            if not admin and isinstance(session.get_bind(), Connection):
                # Joined to a caller's transaction (tests): LOCAL settings would outlive this unit.
                session.execute(text("SELECT set_config('role', 'none', true)"))

    def isolation(self) -> Isolation:
        """Whether units of work run as memagent_app under row-level security (asked once)."""
        if self._isolation is None:
            session = self._sessions()
            with translate_errors(), session, session.begin():
                self._isolation = isolation(session)
        return self._isolation

    def _isolate(self, session: Session, namespace: str | None) -> None:
        if self._isolation is None:
            self._isolation = isolation(session)
        session.execute(
            text(
                "SELECT set_config('memagent.namespace', :ns, true)"
                + (", set_config('role', :role, true)" if self._isolation.on else "")
            ),
            {"ns": namespace if namespace is not None else "", "role": APP_ROLE},
        )

    def run(
        self,
        namespace: str,
        sql: str,
        params: Mapping[str, Any],
        settings: Sequence[tuple[str, str]] = (),
        *,
        prepare: bool = False,
        keyed: bool = False,
    ) -> list[Any]:
        """One statement (text() SQL, :name parameters) as a unit of work of its own; returns its rows.

        The same guarantees as a `with unit(namespace)` block: row-level security as memagent_app with the
        namespace set, `settings` LOCAL to it, committed on success. Over an engine it is one round trip:
        set_config and the statement in one query string on a connection in autocommit, which PostgreSQL
        runs as one implicit transaction (so the LOCAL settings and the role end with it). A connection
        found dropped is replaced and the statement sent once more. prepare: as a prepared statement,
        parsed once per connection, planned once if PostgreSQL keeps a plan for it (memagent.store.prepared:
        what such a statement must be; psycopg2 only); keyed: one of a namespace's own, prepared only where
        the connection has room for it (prepared.KEYED). Over asyncpg: one transaction of three statements.
        Joined to a caller's transaction (tests), the same statements run inside it, as a `with` block does.
        """
        bind = self._bound()
        if isinstance(bind, Connection):  # joined to a caller's transaction (tests): as a `with` block does
            with self(namespace) as store:
                return run_in(store._session.connection(), sql, params, settings)
        values = dict(params) | settings_values(settings, namespace)
        isolate = self.isolation().on
        if bind.dialect.driver != "psycopg2":
            # asyncpg (AsyncMemory) takes one statement per message: BEGIN, the set_config, the statement,
            # COMMIT — on a plain connection, with no ORM session around it.
            with translate_errors(), bind.connect() as conn, conn.begin():
                conn.execute(text(settings_sql(len(settings), True, isolate, named=True)), values)
                return list(conn.execute(text(sql), dict(params)).all())
        prefix, statement = settings_sql(len(settings), True, isolate), driver_sql(sql)
        for attempt in (1, 2):
            with translate_errors():
                # The pool's connection itself: SQLAlchemy's isolation-level switch and reset would cost
                # more than the statement's round trip. Not checked first the first time: a dropped one is
                # replaced below, by a checked one (which also notices a restarted server).
                with unchecked() if attempt == 1 else nullcontext():
                    pooled = bind.raw_connection()
                try:
                    connection: Any = pooled.driver_connection
                    connection.autocommit = True  # psycopg2: client-side; no BEGIN, no COMMIT
                    try:
                        with connection.cursor() as cursor:
                            if prepare:
                                preparing = Preparing(bind, pooled.info)
                                return run_prepared(cursor, preparing, prefix, statement, values, keyed=keyed)
                            cursor.execute(prefix + statement, values)
                            return list(cursor.fetchall())
                    finally:
                        if not connection.closed:
                            connection.autocommit = False
                except Exception as exc:
                    if unreachable(exc):  # dropped: discard this connection and send it once more
                        pooled.invalidate()
                        if attempt == 1:
                            continue
                    raise
                finally:
                    pooled.close()
        raise AssertionError("unreachable")

    def run_aside(
        self,
        namespace: str,
        sql: str,
        params: Mapping[str, Any],
        settings: Sequence[tuple[str, str]] = (),
    ) -> Future[list[Any]] | None:
        """run() on one of the process's recall threads (a connection of its own from the pool), while the
        caller goes on; None when that cannot help: inside a caller's transaction, over asyncpg, or with
        RECALL_THREADS statements already running in this process (the caller then runs it itself).

        The thread holds a connection only while its statement runs and waits for nothing else, so a caller
        that waits for it while holding no connection of its own cannot deadlock the pool.
        """
        return self.aside(lambda: self.run(namespace, sql, params, settings))

    def aside(self, work: Callable[[], list[Any]]) -> Future[list[Any]] | None:
        """`work` (its own units of work) on one of the process's recall threads; None as for run_aside."""
        return _ASIDE.submit(work) if self.asides() else None

    def asides(self) -> bool:
        """Whether run_aside can run statements on the recall threads (over psycopg2 and an engine: not inside
        a caller's transaction, not over asyncpg)."""
        bind = self._bound()
        return isinstance(bind, Engine) and bind.dialect.driver == "psycopg2"

    def _bound(self) -> Engine | Connection:
        if self._bind is None:
            session = self._sessions()
            bind = session.get_bind()
            session.close()
            assert isinstance(bind, Engine | Connection)
            self._bind = bind
        return self._bind
