"""Keeping the HNSW index right: choosing its kind, bulk loads without it, and repair after a killed load.

A bulk load into a table it will dwarf is faster without the index: rows go in at COPY speed and the graph
is built once at the end, with memory and parallel workers sized for the build (docs/benchmarks.md: COPY
with the index in place 294 rows/s at 1536 dimensions; without it, then one build, an order of magnitude
faster). While the index is dropped recall still works, by exact scan. If the loader is killed, the next
memagent that opens the database rebuilds the index (the maintenance lock tells a live loader from a dead
one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from memagent.errors import InputError
from memagent.held_interrupts import held_interrupts
from memagent.store.db_errors import translate_errors
from memagent.store.hnsw import INDEX_LOCK_KEY, IndexKind, create_sql
from memagent.store.namespace_graphs import build_concurrently
from memagent.store.namespace_graphs import index_name as graph_name
from memagent.store.scope import Scope
from memagent.usecases.service import MemoryService
from memagent.validation import ALL_NAMESPACES, clean_name

BUSY = "another memagent is loading or rebuilding the index; try again later."
# Loads smaller than this keep the index in place: a build costs more than inserting into the graph.
BULK_MIN_ROWS = 10_000


@dataclass(frozen=True)
class GraphStatus:
    """A namespace's own graph (memagent.store.namespace_graphs): its memories, whether built, its size."""

    namespace: str
    rows: int
    present: bool
    size_bytes: int


@dataclass(frozen=True)
class IndexStatus:
    """The index recall should be served by, and whether it is there; the namespaces' own graphs."""

    kind: IndexKind
    present: bool
    rows: int
    size_bytes: int
    graphs: tuple[GraphStatus, ...] = ()
    sparser: tuple[str, ...] = ()  # indexes growing with a smaller ef_construction (hnsw.IndexRepository)


class IndexMaintenance:
    """Index operations over a MemoryService's database."""

    def __init__(self, memory: MemoryService) -> None:
        self.memory = memory

    def status(self) -> IndexStatus:
        """The recorded kind, whether the index is in place, the rows it covers and its size."""
        with self.memory.unit(ALL_NAMESPACES) as store:
            kind, present = store.space.index_kind(), store.index.present()
            rows, size = store.memories.count(None), store.index.size_bytes()
        with self.memory.unit(admin=True) as store:  # (namespace_graphs is the owner's)
            graphs = tuple(
                GraphStatus(g.namespace, store.memories.count(Scope(g.namespace)), g.present, g.size_bytes)
                for g in store.index.graphs.listing()
            )
            sparser = tuple(store.index.sparser())
        return IndexStatus(kind, present, rows, size, graphs, sparser)

    def add_graph(self, namespace: str, notify: Callable[[str], None] | None = None) -> bool:
        """Give a namespace an HNSW graph of its own and build it (or build it again if it is missing);
        False if it has one in place already. `notify` hears when the build starts.

        Recall and writes go on meanwhile: the graph is built concurrently (CREATE INDEX CONCURRENTLY, on a
        connection of its own), after its namespace is recorded. Inside a caller's transaction (a service
        over a connection) it is built in that transaction, writes waiting, as a rebuild does.
        """
        namespace = clean_name(namespace, "namespace")
        with self.memory.unit(admin=True) as store:
            self.memory.check_embedding_space(store, claim=True)
            if not store.index.try_lock():
                raise InputError(BUSY)
            graphs = store.index.graphs
            if any(g.namespace == namespace and g.present for g in graphs.listing()):
                return False
            graphs.add(namespace)
            if not store.index.present():  # a bulk load's end, or the repair, builds it with the table's
                return True
            engine = store.index.engine()
            if notify is not None:
                notify(f"Building a graph for namespace {namespace!r}…")
            if engine is None:
                store.index.create_graph(store.space.index_kind(), self.memory.embedder.dim, namespace)
                return True
            settings = store.index.build_settings(namespace)
        dim = self.memory.embedder.dim

        def table_sql(kind: str) -> str:  # (the kind in force when the build starts)
            return create_sql("halfvec" if kind == "halfvec" else "vector", dim, name=graph_name(namespace))

        with translate_errors():  # (recorded: `memagent index --namespace` again builds one that failed)
            if not build_concurrently(engine, table_sql, namespace, settings, INDEX_LOCK_KEY):
                raise InputError(BUSY)
        return True

    def drop_graph(self, namespace: str) -> bool:
        """Drop a namespace's own graph (its recall goes back to the table's); False if it had none."""
        namespace = clean_name(namespace, "namespace")
        with self.memory.unit(admin=True) as store:
            if not store.index.try_lock():
                raise InputError(BUSY)
            return store.index.graphs.remove(namespace)

    def rebuild(self, kind: IndexKind) -> None:
        """Build the index of this kind and make it the one recall uses, in one transaction.

        Recall keeps using the old index while the new one builds; writes wait until the switch commits.
        """
        if kind not in ("vector", "halfvec"):
            raise InputError(f"the index kind must be vector or halfvec, not {kind!r}.")
        with self.memory.unit(admin=True) as store:
            self.memory.check_embedding_space(store, claim=True)
            if not store.index.try_lock():
                raise InputError(BUSY)
            store.index.hold_writes()
            store.index.set_aside()
            store.index.create_all(kind, self.memory.embedder.dim)
            store.index.drop_set_aside()
            store.space.set_index_kind(kind)

    def repair(self) -> bool:
        """Rebuild the index if a killed bulk load left the table without it (and with it the namespaces'
        graphs, dropped with it); True if it did. A namespace's graph missing on its own (a build that
        failed) is left to `memagent index --namespace`: its recall is served by the table's graph
        meanwhile, and every command runs this first."""
        with self.memory.unit(admin=True) as store:
            # The maintenance lock first: while a bulk load drops or builds the index, the catalogue is
            # changing under a look at it (a concurrent DROP INDEX made that look fail 1 run in 4).
            if not store.index.try_lock():
                return False  # a live bulk load (or another repair) owns the index right now
            if store.space.get() is None or store.index.present():
                return False
            store.index.create_all(store.space.index_kind(), self.memory.embedder.dim)
            return True

    @contextmanager
    def bulk_load(
        self,
        load_rows: Callable[[int], int],
        notify: Callable[[str], None] | None = None,
        *,
        min_rows: int = BULK_MIN_ROWS,
    ) -> Iterator[bool]:
        """Load without the index when the load is large and at least the table's size; yields whether.

        `load_rows(enough)` counts the rows the load brings and may stop counting at `enough` (a large file
        need not be read to its end to know it is large enough). The maintenance lock is held, in a
        transaction of its own, for the whole load; the index is dropped in one committed transaction and
        rebuilt in another at the end (also when the load fails).
        """
        if load_rows(min_rows) < min_rows:
            yield False
            return
        with self.memory.unit(ALL_NAMESPACES) as store:
            stored = store.memories.count(None)
        if stored > min_rows and load_rows(stored) < stored:
            yield False
            return
        # The holder's transaction touches nothing but the lock: a lock on memories would block the drop.
        with self.memory.unit(admin=True) as holder:
            if not holder.index.try_lock():
                yield False
                return
            with self.memory.unit(admin=True) as store:
                store.index.drop()
            stopped = True
            try:
                yield True
                stopped = False
            finally:
                if notify is not None:  # (stopped: a Ctrl-C waits for the build, and is told why)
                    with suppress(Exception):  # (a closed stderr must not cost the index)
                        notify(
                            "Stopping: first building the vector index the load set aside (recall needs it)…"
                            if stopped
                            else "Building the vector index…"
                        )
                # A Ctrl-C during the build is answered once it is committed (not by a rollback).
                with held_interrupts(), self.memory.unit(admin=True) as store:
                    store.index.create_all(store.space.index_kind(), self.memory.embedder.dim)
                with self.memory.unit(admin=True) as store:  # (its own: a failure cannot undo the build)
                    store.bulk.analyze()  # recall right after plans with the loaded rows' statistics
