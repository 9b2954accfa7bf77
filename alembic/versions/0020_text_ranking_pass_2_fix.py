"""full-text recall: revision 0019's ranking again, fixed (pass 2 with no set to read returned stale rows)

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30

Revision 0019's first version (commit 4442fc0) left pass 2's result variables holding the previous step's
rows when no candidate set reached the threshold (bounds summed in two orders can differ in the last bit):
those rows, already merged, were returned twice and pushed a true top memory out. Revision 0019 now creates
the fixed function (memagent.store.text_passes); this one re-creates it for a database that ran the first
version. Downgrading leaves it: it is the function revision 0019 creates.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.PASSES_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    pass
