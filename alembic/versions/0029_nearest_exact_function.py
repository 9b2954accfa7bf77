"""memagent_nearest_exact: the exact ranking that completes a short index scan, called only then

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-02

Every vector ranking carried, beside the HNSW index scan, an exact ranking of its scope for when the scan
comes back short; never started otherwise, it was still planned on every recall (about 0.8 ms of a 2-3 ms
vector recall on 110k x 1536). It is now a function (memagent.store.exact), whose query is planned only
when it runs.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import exact, roles

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in exact.UPGRADE:
        op.execute(statement)
    op.execute(roles.GRANT_SQL)


def downgrade() -> None:
    for statement in exact.DOWNGRADE:
        op.execute(statement)
