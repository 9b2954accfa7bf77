"""The HNSW index on memories.embedding: its one owner. Parameters, DDL, how recall addresses it, builds.

- vector: the index on the column itself: full-precision graph.
- halfvec: an expression index on `embedding::halfvec(dim)`: half the size, so twice as much of the graph
  stays in memory. It pays when the index outgrows the buffer cache (100k x 1536 with 128 MB: store p95
  8.1 vs 12.6 ms); when the index fits it gains nothing (docs/benchmarks.md). Queries must use the same
  expression for the planner to pick it.

Which kind recall uses is recorded in embedding_space.index_kind (revision 0004), not read off the index: a
bulk import drops the index while it loads, and the rebuild (or the repair after a killed import) must know
which kind to build. Whether the index is in place is read from the catalogue. With no index, recall scans
exactly: slower, correct.

Revisions, the ORM declaration (memagent.store.models), `memagent index`, bulk loads and `reembed` all build
the index from `create_sql` here. Revision 0001 builds with M and EF_CONSTRUCTION as they are now: changing
them needs a revision that brings existing databases' indexes to them (0036 did, for ef_construction, by
ALTER INDEX: new inserts and later builds use it), and tests/test_migrations.py pins them.
"""

from __future__ import annotations

import os
from contextlib import suppress
from typing import Any, Literal

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from memagent.store.namespace_graphs import NamespaceGraphs
from memagent.store.namespace_graphs import index_name as graph_name

IndexKind = Literal["vector", "halfvec"]
INDEX_NAME = "ix_memories_embedding_hnsw"
# The graph's parameters: m pgvector's default; ef_construction twice its default (revision 0036: at 64 a
# graph missed up to 1.1% of the 10 nearest at 100k x 1536, at ef_search 120 as well; at 128 none, the build
# 40-70% longer).
M = 16
EF_CONSTRUCTION = 128
OPCLASS: dict[IndexKind, str] = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}
# Advisory lock held while the index is dropped for a bulk load, repaired or rebuilt (not migrations' key).
INDEX_LOCK_KEY = 0x6D656D6167656E74 ^ 0x696E_6478  # "memagent" ^ "indx"
_SET_ASIDE = "memagent_old_hnsw"
# The memories the graph holds (revision 0028): all but those stored since their last indexing step.
PREDICATE = "indexed"


def key_expression(index: IndexKind | None, dim: int, column: str = "embedding") -> str:
    """The SQL expression the index is built on (what ORDER BY ... <=> must use to be served by it)."""
    return f"({column})::halfvec({dim})" if index == "halfvec" else column


def query_expression(index: IndexKind | None, dim: int, param: str = ":qvec") -> str:
    """The query vector, cast to match key_expression."""
    return f"CAST({param} AS halfvec({dim}))" if index == "halfvec" else f"CAST({param} AS vector)"


def order_key(column: Any, query: Any, index: IndexKind | None, dim: int) -> Any:
    """The SQLAlchemy expression recall orders by for the index in place (key_expression <=> the query)."""
    if index == "halfvec":
        from pgvector.sqlalchemy import HALFVEC
        from sqlalchemy import cast

        return cast(column, HALFVEC(dim)).cosine_distance(cast(query, HALFVEC(dim)))
    return column.cosine_distance(query)


# The largest magnitude a halfvec component holds (IEEE half precision).
HALFVEC_MAX = 65504.0


def takes(kind: IndexKind | None, vector: Any) -> bool:
    """Whether the index of this kind can hold the vector (a halfvec index: every component within
    HALFVEC_MAX; beyond it PostgreSQL refuses the row when it computes the index's key)."""
    import numpy as np

    return kind != "halfvec" or float(np.max(np.abs(np.asarray(vector, dtype=np.float64)))) <= HALFVEC_MAX


def create_sql(kind: IndexKind, dim: int, *, deferred: bool = True, name: str = INDEX_NAME) -> str:
    """The CREATE INDEX statement for the index of this kind (dim matters for halfvec only).

    deferred: partial, over the memories whose `indexed` is true (revision 0028: a memory stored by the
    one-statement path joins the graph after its store: memagent.store.deferred); revisions before 0028 build
    the whole-table index of their time. name: another index of the same definition (a namespace's graph:
    memagent.store.namespace_graphs, which adds its condition).
    """
    return (
        f"CREATE INDEX IF NOT EXISTS {name} ON memories USING hnsw "
        f"(({key_expression(kind, dim)}) {OPCLASS[kind]}) "
        f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})" + (f" WHERE {PREDICATE}" if deferred else "")
    )


def build_memory_mb() -> int:
    """maintenance_work_mem for an index build: the graph should fit (64 MB builds 4x slower at 100k x 1536),
    but never more than a quarter of this machine's memory."""
    import psutil

    total = psutil.virtual_memory().total // 2**20
    return int(max(64, min(2048, total // 4)))


def build_workers() -> int:
    """Parallel workers for an index build besides the leader: every other core, at most 7."""
    return max(0, min(7, (os.cpu_count() or 1) - 1))


# A parallel build first sets aside its whole build memory (maintenance_work_mem) in shared memory, ~1 s for
# 2 GB on two cores, which is longer than a serial build of a few thousand memories takes (5,000 x 1536:
# serial 2.2-2.5 s, parallel 2.7-3.0; 10,000: serial 5.8-6.3, parallel 4.8-5.2; an empty table, as every new
# database's migrations build it: 0.003 s against 0.98): below this many memories a build is serial.
PARALLEL_MIN_ROWS = 10_000

# pgvector before 0.8.2 has CVE-2026-3172: a parallel HNSW build can overflow a buffer, leaking data from
# other relations or crashing the server. On those versions memagent builds serially.
SAFE_PARALLEL_BUILDS = (0, 8, 2)


def parallel_builds_safe(pgvector: str | None) -> bool:
    """Whether this pgvector version builds HNSW indexes in parallel safely."""
    if pgvector is None:
        return False
    try:
        version = tuple(int(part) for part in pgvector.split(".")[:3])
    except ValueError:
        return False
    return version >= SAFE_PARALLEL_BUILDS


class IndexRepository:
    """The index's state and its builds, in the caller's transaction (never commits)."""

    def __init__(self, session: Session | Connection) -> None:
        self.session = session  # (a migration's connection, or a unit of work's session)

    def present(self) -> bool:
        """Whether the index exists (a bulk load drops it while it loads)."""
        found = self.session.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": INDEX_NAME})
        return bool(found.scalar_one())

    def sparser(self) -> list[str]:
        """The HNSW indexes on memories that grow with a smaller ef_construction than EF_CONSTRUCTION: made
        before revision 0036 and left as they were by its upgrade (in use at the time), until rebuilt."""
        found = self.session.execute(
            text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_am a ON a.oid = c.relam"
                " WHERE i.indrelid = 'memories'::regclass AND a.amname = 'hnsw' AND coalesce(("
                "   SELECT split_part(o, '=', 2)::int FROM unnest(c.reloptions) o"
                "   WHERE o LIKE 'ef_construction=%'), 64) < :ef ORDER BY 1"
            ),
            {"ef": EF_CONSTRUCTION},
        )
        return list(found.scalars())

    def size_bytes(self) -> int:
        """The index's size on disk (0 when it is missing)."""
        size = self.session.execute(
            text("SELECT coalesce(pg_relation_size(to_regclass(:name)), 0)"), {"name": INDEX_NAME}
        ).scalar_one()
        return int(size)

    def try_lock(self) -> bool:
        """Take the index-maintenance lock for this transaction, if nobody holds it.

        A bulk load holds it for its whole run (its index is dropped on purpose meanwhile); a repair or a
        rebuild holds it while it builds. A killed holder's connection closes and the lock goes with it.
        """
        taken = self.session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": INDEX_LOCK_KEY})
        return bool(taken.scalar_one())

    def hold_writes(self) -> None:
        """Block writes to memories until this transaction ends; readers go on. Taken before any lock on the
        index: a writer (another process's, or an indexing step of this one's: memagent.store.deferred) then
        waits for the table, rather than holding it while it waits for the index, a deadlock."""
        self.session.execute(text("LOCK TABLE memories IN SHARE ROW EXCLUSIVE MODE"))

    def _rows_below(self, rows: int, namespace: str | None = None) -> bool:
        """Whether memories (of the namespace) holds fewer than `rows` rows with an embedding (counted up to
        `rows`)."""
        where = "" if namespace is None else " AND namespace = :ns"
        counted = self.session.execute(
            text(
                f"SELECT count(*) FROM (SELECT 1 FROM memories WHERE embedding IS NOT NULL{where} LIMIT :n) m"
            ),
            {"n": rows, "ns": namespace},
        )
        return int(counted.scalar_one()) < rows

    def drop(self) -> None:
        """Drop the index and the namespaces' graphs (before a bulk load into a table the load will dwarf, or
        a column retype); the namespaces keep their record, for create_all."""
        self.session.execute(text(f"DROP INDEX IF EXISTS {INDEX_NAME}"))
        self.graphs.drop_all()

    def set_aside(self) -> None:
        """Rename the index and the namespaces' graphs in place so new ones can be built beside them (recall
        keeps using the old)."""
        self.session.execute(text(f"ALTER INDEX IF EXISTS {INDEX_NAME} RENAME TO {_SET_ASIDE}"))
        self.graphs.set_aside()

    def drop_set_aside(self) -> None:
        """Drop what set_aside() set aside."""
        self.session.execute(text(f"DROP INDEX IF EXISTS {_SET_ASIDE}"))
        self.graphs.drop_set_aside()

    def build_settings(self, namespace: str | None = None) -> dict[str, str]:
        """Memory and parallel workers for an index build over the table (or a namespace's memories)."""
        version = self.session.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
        workers = build_workers() if parallel_builds_safe(version.scalar_one_or_none()) else 0
        if workers and self._rows_below(PARALLEL_MIN_ROWS, namespace):
            workers = 0
        return {
            "maintenance_work_mem": f"{build_memory_mb()}MB",
            "max_parallel_maintenance_workers": str(workers),
        }

    def prepare_build(self, namespace: str | None = None) -> None:
        """Hold writes and size memory and parallel workers for index builds in this transaction (the table's
        graph, or a namespace's: memagent.store.namespace_graphs, whose rows decide whether it is parallel).

        The planner sizes parallel index builds by the table's main heap; 1536-dimension vectors live in the
        TOAST table, so without an explicit parallel_workers on the table it plans no workers at all.
        """
        self.hold_writes()  # (before its rows: a writer waiting for one of them would deadlock the build)
        settings = self.build_settings(namespace)
        for name, value in settings.items():
            self.session.execute(text("SELECT set_config(:s, :v, true)"), {"s": name, "v": value})
        workers = int(settings["max_parallel_maintenance_workers"])
        self.session.execute(text(f"ALTER TABLE memories SET (parallel_workers = {max(workers, 1)})"))

    def create(self, kind: IndexKind, dim: int) -> None:
        """Build the table's index of this kind, with memory and parallel workers sized for the build."""
        self.prepare_build()
        self.session.execute(text(f"UPDATE memories SET {PREDICATE} = true WHERE NOT {PREDICATE}"))  # all in
        self.session.execute(text(create_sql(kind, dim)))
        self.session.execute(text("ALTER TABLE memories RESET (parallel_workers)"))

    def create_all(self, kind: IndexKind, dim: int) -> None:
        """Build the table's index and every recorded namespace's graph (revision 0034) not in place. A
        namespace's graph that fails to build is left out (under a savepoint), not the table's with it:
        the namespace's recall is served by the table's graph, `memagent index` says it is not built, and
        `memagent index --namespace` builds it again, saying why if it fails."""
        self.create(kind, dim)
        for namespace in self.graphs.recorded():
            with suppress(DBAPIError), self.session.begin_nested():
                self.create_graph(kind, dim, namespace)

    def create_graph(self, kind: IndexKind, dim: int, namespace: str) -> None:
        """Build one namespace's graph (memagent.store.namespace_graphs) in this transaction, sized for its
        rows."""
        self.prepare_build(namespace)
        self.graphs.build(create_sql(kind, dim, name=graph_name(namespace)), namespace)
        self.session.execute(text("ALTER TABLE memories RESET (parallel_workers)"))

    def engine(self) -> Engine | None:
        """The engine this repository's session draws its connections from (None: bound to a connection,
        a caller's transaction or a migration's)."""
        bind = self.session.get_bind() if isinstance(self.session, Session) else self.session
        return bind if isinstance(bind, Engine) else None

    @property
    def graphs(self) -> NamespaceGraphs:
        """The namespaces' own graphs (memagent.store.namespace_graphs)."""
        return NamespaceGraphs(self.session)
