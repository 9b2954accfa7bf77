"""Deferred indexing (revision 0028): a memory stored in one statement joins the HNSW graph just after.

Inserting a memory into the graph was most of the time storing it took (docs/benchmarks.md). The HNSW index
is partial (`WHERE indexed`: memagent.store.hnsw); the one-statement store (memagent.store.memories'
add_one_guarded, a chat turn's and `remember`'s) commits its memory with `indexed` false, so it is as durable
as before when the call returns, and recall finds it at once by an exact scan of its scope's memories not yet
indexed (memagent.store.search_sql's nearest_new). Then an indexing step (INDEX_NEW) sets `indexed`, which
inserts it into the graph, on one of the process's recall threads while the caller goes on (Indexing).

What a killed process left unindexed is taken by the next step in its namespace, or by the periodic sweep
over every namespace (MemoryService's catch-up); meanwhile it is still found, by the exact scan. Index
builds (memagent.store.hnsw.IndexRepository.create) take every memory in.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from contextlib import suppress
from typing import Any

from memagent.errors import DatabaseError
from memagent.store.unit import UnitOfWork

# The most memories one step indexes (a step after a store finds one; a sweep after a killed process, more).
BATCH = 256

# The memories of the transaction's namespace (row-level security: every namespace for a sweep) not in the
# graph yet, oldest first; rows another transaction holds are skipped, left to a later step, so that a step
# never waits on a writer for a row. Its one row: how many it indexed. The UPDATE is the outer statement, so
# its lock on the table is the first it takes (a select FOR UPDATE analysed first would take a weaker one,
# then upgrade it: an index rebuild holding writes off in between deadlocked with it).
INDEX_NEW = """
WITH done AS (
    UPDATE memories m SET indexed = true
    WHERE m.id IN (
        SELECT d.id FROM memories d WHERE NOT d.indexed ORDER BY d.id LIMIT CAST(:batch AS integer)
        FOR UPDATE SKIP LOCKED
    )
    RETURNING 1
)
SELECT count(*) FROM done"""


class Indexing:
    """The indexing steps of one service: started after its stores, waited for when it closes.

    A step runs on a recall thread (UnitOfWork.run_aside); when none is free, in the caller's thread, so
    that no store goes without its step. Thread-safe.
    """

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit
        self._running: set[Future[list[Any]]] = set()
        self._pid = os.getpid()  # whose steps they are (a forked child has none of its parent's threads)
        self._lock = threading.Lock()

    def defers(self) -> bool:
        """Whether a store may leave its memory to a step (with a recall thread to run it: over psycopg2
        and an engine; otherwise the store indexes its memory itself, as before revision 0028)."""
        return self._unit.asides()

    def start(self, namespace: str) -> None:
        """Index the namespace's memories stored since the last step: on a recall thread, or now. A step that
        fails (the database gone meanwhile) leaves its memories to a later one: the store stands."""
        step = self._unit.run_aside(namespace, INDEX_NEW, {"batch": BATCH})
        if step is None:
            with suppress(DatabaseError):
                self._unit.run(namespace, INDEX_NEW, {"batch": BATCH})
            return
        with self._lock:
            self._own()
            self._running = {running for running in self._running if not running.done()} | {step}

    def settle(self) -> None:
        """Wait for the steps started (a failed one leaves its memories to a later step: not an error)."""
        with self._lock:
            self._own()
            running, self._running = self._running, set()
        for step in running:
            with suppress(Exception):
                step.result()

    def _own(self) -> None:
        """Forget the steps of the process this one was forked from (their threads are not here)."""
        if self._pid != os.getpid():
            self._pid, self._running = os.getpid(), set()
