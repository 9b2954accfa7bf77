"""namespace isolation in the database: row-level security on memories, for the role memagent_app

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Every unit of work memagent runs switches to the role memagent_app for its transaction and names its
namespace in the setting memagent.namespace; the policy lets it see and write that namespace's rows only.
A query that forgets its namespace filter still cannot read, change or delete another namespace's rows.
Operations across namespaces (export of all, import, re-embedding, backfill) say so with the value '*'.
Superusers bypass row-level security, which is why memagent switches role rather than relying on its login.
"""

from collections.abc import Sequence

from alembic import op
from memagent.store import roles

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VISIBLE = roles.VISIBLE


def upgrade() -> None:
    # Stated once, in memagent.store.roles: create and join memagent_app where this login may (else a
    # warning, and memagent says on every run that isolation is off), then grant it the tables.
    op.execute(roles.CREATE_AND_JOIN_SQL)
    op.execute(roles.GRANT_SQL)
    op.execute("ALTER TABLE memories ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY memagent_namespace ON memories USING {VISIBLE} WITH CHECK {VISIBLE}")


def downgrade() -> None:
    # The role stays: it is cluster-wide, and other databases of the cluster may use it.
    op.execute("DROP POLICY memagent_namespace ON memories")
    op.execute("ALTER TABLE memories DISABLE ROW LEVEL SECURITY")
