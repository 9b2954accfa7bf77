"""A namespace's own HNSW graph: a partial index over one namespace's memories (`memagent index --namespace`).

The table's one graph serves every namespace: a namespace's vector recall walks it and drops the memories of
the others as it meets them (pgvector's iterative scan). For a namespace that is a tenth of the table, 9 of
every 10 memories met are someone else's: in the 1M table of docs/benchmarks.md the 100k namespace's 50
nearest took 10-11 ms at p50, against 2 ms for the bare pgvector query over the whole table. pgvector's
documentation gives the way for a few large values of a filter: a partial index on each. With a graph of its
own, the same recall took 2.1 ms, and hybrid recall in that namespace went from 16.0 / 29.8 to 6.6 / 18.2 ms
(p50 / p95).

The graph holds the namespace's memories that the table's graph holds (`indexed`, revision 0028) with
the same key, operator class and parameters (memagent.store.hnsw, which builds it), so recall finds the
rest exactly as it does with the table's graph alone, and the planner takes the namespace's graph for any
recall that names the namespace in its statement (memagent.store.keyed writes it in; psycopg2 sends every
value as text). A memory of the namespace goes into both graphs when it is indexed; a bulk load, a
re-embedding and a rebuild drop or replace the table's graph, and build these again: which namespaces have
one is kept in namespace_graphs (revision 0034), not read off the catalogue, so that a load killed while
they were dropped still knows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

PREFIX = "ix_memories_hnsw_ns_"
_SET_ASIDE = "_old"
TABLE = "namespace_graphs"

TABLE_SQL = f"""
CREATE TABLE {TABLE} (
    namespace varchar(200) PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
)"""


def index_name(namespace: str) -> str:
    """The graph's index name: a digest of the namespace (any printable text; index names are 63 bytes)."""
    return PREFIX + hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:16]


def create_sql(table_sql: str, namespace: str) -> str:
    """A DO block that creates a namespace's graph from `table_sql`, the table graph's definition under the
    graph's name (memagent.store.hnsw.create_sql), over the namespace's memories. The namespace is read
    from the setting memagent.graph_namespace and quoted by the server (format's %L): no namespace's text is
    ever part of a statement."""
    return (
        f"DO $$ BEGIN EXECUTE format($ddl${table_sql} AND namespace = %L$ddl$,"
        " current_setting('memagent.graph_namespace')); END $$"
    )


@dataclass(frozen=True)
class Graph:
    """One namespace's graph: whether it is built (a load may have it dropped) and its size."""

    namespace: str
    present: bool
    size_bytes: int


class NamespaceGraphs:
    """The namespaces with a graph of their own, and their builds, in the caller's transaction (the table
    owner's: IndexMaintenance); IndexRepository drops, sets aside and builds them with the table's graph."""

    def __init__(self, session: Session | Connection) -> None:
        self.session = session

    def recorded(self) -> list[str]:
        """The namespaces given a graph of their own (none before revision 0034)."""
        if self.session.execute(text("SELECT to_regclass(:t) IS NULL"), {"t": TABLE}).scalar_one():
            return []
        rows = self.session.execute(text(f'SELECT namespace FROM {TABLE} ORDER BY namespace COLLATE "C"'))
        return [str(row) for row in rows.scalars()]

    def listing(self) -> list[Graph]:
        """Each recorded namespace's graph, built or not, and its size."""
        found = []
        for namespace in self.recorded():
            size = self.session.execute(
                text("SELECT pg_relation_size(to_regclass(:name))"), {"name": index_name(namespace)}
            ).scalar_one()
            found.append(Graph(namespace, size is not None, int(size or 0)))
        return found

    def add(self, namespace: str) -> None:
        """Record the namespace (its graph is built by build)."""
        self.session.execute(
            text(f"INSERT INTO {TABLE} (namespace) VALUES (:ns) ON CONFLICT DO NOTHING"), {"ns": namespace}
        )

    def remove(self, namespace: str) -> bool:
        """Drop the namespace's graph and forget it; False if it had none."""
        gone = self.session.execute(
            text(f"DELETE FROM {TABLE} WHERE namespace = :ns RETURNING namespace"), {"ns": namespace}
        ).first()
        self.session.execute(text(f"DROP INDEX IF EXISTS {index_name(namespace)}"))
        return gone is not None

    def build(self, table_sql: str, namespace: str) -> None:
        """Build a namespace's graph if it is not in place (IndexRepository.create_graph gives the table
        graph's definition under its name, and sizes the build)."""
        self.session.execute(
            text("SELECT set_config('memagent.graph_namespace', :ns, true)"), {"ns": namespace}
        )
        self.session.execute(text(create_sql(table_sql, namespace)))

    def _present(self, set_aside: bool = False) -> list[str]:
        """The names of the graphs in place (or of those set aside)."""
        pattern = PREFIX.replace("_", r"\_") + "%" + (_SET_ASIDE.replace("_", r"\_") if set_aside else "")
        rows = self.session.execute(
            text(
                "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
                " WHERE x.indrelid = to_regclass('memories') AND i.relname LIKE :p"
                + ("" if set_aside else " AND i.relname NOT LIKE :old")
            ),
            {"p": pattern, "old": "%" + _SET_ASIDE.replace("_", r"\_")},
        )
        return [str(name) for name in rows.scalars()]

    def drop_all(self) -> None:
        """Drop every namespace's graph, keeping the record (with the table's: bulk loads, re-embedding)."""
        for name in self._present() + self._present(set_aside=True):
            self.session.execute(text(f"DROP INDEX IF EXISTS {name}"))

    def set_aside(self) -> None:
        """Rename the graphs in place so new ones can be built beside them (recall keeps using the old)."""
        for name in self._present(set_aside=True):
            self.session.execute(text(f"DROP INDEX IF EXISTS {name}"))
        for name in self._present():
            self.session.execute(text(f"ALTER INDEX {name} RENAME TO {name}{_SET_ASIDE}"))

    def drop_set_aside(self) -> None:
        """Drop the graphs set aside by set_aside()."""
        for name in self._present(set_aside=True):
            self.session.execute(text(f"DROP INDEX IF EXISTS {name}"))
