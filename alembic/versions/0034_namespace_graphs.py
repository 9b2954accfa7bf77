"""namespace_graphs: the namespaces given an HNSW graph of their own

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-03

`memagent index --namespace NAME` builds a partial HNSW index over one namespace's memories
(memagent.store.namespace_graphs): a namespace that is a large share of a shared table is then searched
in its own graph instead of the table's, filtered. This table records which namespaces have one, so that a
bulk load, a re-embedding or a rebuild, which drop or replace the table's graph, build theirs again. Only
the tables' owner reads and writes it (memagent_app has no privilege on it).
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import namespace_graphs

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(namespace_graphs.TABLE_SQL)


def downgrade() -> None:
    bind = op.get_bind()
    namespace_graphs.NamespaceGraphs(bind).drop_all()
    op.execute(f"DROP TABLE {namespace_graphs.TABLE}")
