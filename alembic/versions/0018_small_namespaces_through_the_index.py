"""full-text recall in a small namespace reads only the memories holding a query word

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30

Up to 2,000 memories the ranking scores every match in one pass; it found them by reading the whole
namespace. Revision 0017's index keys each word by its namespace, so it now finds them there (a word too
long for the index still reads the namespace): memagent.store.text_small.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import text_schema

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in text_schema.SMALL_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in text_schema.SMALL_DOWNGRADE:
        op.execute(statement)
