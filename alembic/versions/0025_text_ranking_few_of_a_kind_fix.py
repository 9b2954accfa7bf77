"""text ranking: revision 0024's function again, its count of a kind planned for its values every call

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01

Revision 0024's first version (commit b86ddb5) counted the namespace's memories of the kinds asked for with
static SQL inside the function: PL/pgSQL caches its plan per session, and from the sixth call PostgreSQL may
switch to a generic plan, which an outside read saw scan the whole table (every row, since a namespace with
at most 2,000 of the kind never reaches the LIMIT): 1.3 ms became 14-22 ms on 21,000 rows. The count is now
dynamic SQL, planned with the call's values. Revision 0024 now creates the fixed function
(memagent.store.text_kinds); this one re-creates it for a database that ran the first version. Downgrading
leaves it: it is the function revision 0024 creates.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.KINDS_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    pass
