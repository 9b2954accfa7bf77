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
from memagent.validation import ALL_NAMESPACES

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

    Steps run one at a time per service, on a recall thread (UnitOfWork.aside): a store while one runs
    leaves its namespace to it, and it takes one more step when it ends (each step takes every memory
    waiting, up to BATCH), so stores one after another never queue a step each, and a step never holds up a
    store. When no recall thread is free, the step runs in the caller's thread, so that no store goes
    without one. Thread-safe.
    """

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit
        self._running: Future[list[Any]] | None = None  # the step running, if any
        self._again: set[str] = set()  # namespaces stored into since it started
        self._pid = os.getpid()  # whose step it is (a forked child has none of its parent's threads)
        self._lock = threading.Lock()

    def defers(self) -> bool:
        """Whether a store may leave its memory to a step (with a recall thread to run it: over psycopg2
        and an engine; otherwise the store indexes its memory itself, as before revision 0028)."""
        return self._unit.asides()

    def start(self, namespace: str) -> None:
        """Index the namespace's memories stored since the last step: on a recall thread (after the step
        running, if one is), or now. A step that fails (the database gone meanwhile) leaves its memories to a
        later one: the store stands."""
        self._own()
        with self._lock:
            if self._running is not None and not self._running.done():
                self._again.add(namespace)
                return
            self._running = self._unit.aside(lambda: self._steps(namespace))
            if self._running is not None:
                return
        self._step(namespace)

    def sweep(self) -> None:
        """A step over every namespace (what a killed process left waiting), when steps run at all."""
        if self.defers():
            self.start(ALL_NAMESPACES)

    def settle(self) -> None:
        """Wait for the steps started (a failed one leaves its memories to a later step: not an error)."""
        self._own()
        with self._lock:
            running = self._running
        if running is not None:
            with suppress(Exception):
                running.result()

    def _steps(self, namespace: str) -> list[Any]:
        """A step, then one for each namespace stored into meanwhile, until none is left (a recall thread)."""
        ended = False
        try:
            while True:
                self._step(namespace)
                with self._lock:  # (deciding to end and saying so at once: a store in between is seen)
                    if not self._again:
                        self._running, ended = None, True
                        return []
                    namespace = self._again.pop()
        finally:
            if not ended:  # (an unexpected error: the next store starts a step anew)
                with self._lock:
                    self._running = None

    def _step(self, namespace: str) -> None:
        with suppress(DatabaseError):
            self._unit.run(namespace, INDEX_NEW, {"batch": BATCH})

    def _own(self) -> None:
        """Forget the step of the process this one was forked from (its thread is not here), and its lock
        (which another of its threads may have held at the fork): before taking the lock."""
        if self._pid != os.getpid():
            self._pid, self._running, self._again = os.getpid(), None, set()
            self._lock = threading.Lock()
