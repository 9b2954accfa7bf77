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
from memagent.store.unit import APP_ROLE
from memagent.validation import ALL_NAMESPACES

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = APP_ROLE
VISIBLE = (
    "(namespace = current_setting('memagent.namespace', true)"
    f" OR current_setting('memagent.namespace', true) = '{ALL_NAMESPACES}')"
)


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} NOLOGIN NOBYPASSRLS;
            END IF;
            EXECUTE format('GRANT {ROLE} TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'memagent: cannot create or grant {ROLE}; namespaces enforced by queries only';
        END
        $$
        """
    )
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                EXECUTE format('GRANT USAGE ON SCHEMA %I TO {ROLE}', current_schema());
                GRANT SELECT, INSERT, UPDATE, DELETE
                    ON memories, embedding_space, embedding_staging TO {ROLE};
                EXECUTE format(
                    'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO {ROLE}', current_schema()
                );
            END IF;
        END
        $$
        """
    )
    op.execute("ALTER TABLE memories ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY memagent_namespace ON memories USING {VISIBLE} WITH CHECK {VISIBLE}")


def downgrade() -> None:
    # The role stays: it is cluster-wide, and other databases of the cluster may use it.
    op.execute("DROP POLICY memagent_namespace ON memories")
    op.execute("ALTER TABLE memories DISABLE ROW LEVEL SECURITY")
