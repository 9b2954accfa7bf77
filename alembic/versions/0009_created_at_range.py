"""created_at within the range memagent accepts (validation.MIN_DATE..MAX_DATE), checked by the database

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

Every entry point refuses dates outside the range; this makes the database refuse them too, whichever way
they come (binary COPY of an import included). Added NOT VALID, then validated where every row stored
before is within the range: a database holding older out-of-range rows still upgrades (reading copes with
them: memagent.store.database), and keeps the constraint for new rows.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE memories ADD CONSTRAINT ck_memories_created_at_range CHECK ("
        "created_at >= timestamptz '0001-01-02 00:00:00+00'"
        " AND created_at <= timestamptz '9999-12-30 23:59:59.999999+00'"
        ") NOT VALID"
    )
    op.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM memories"
        " WHERE created_at < timestamptz '0001-01-02 00:00:00+00'"
        " OR created_at > timestamptz '9999-12-30 23:59:59.999999+00') THEN"
        " ALTER TABLE memories VALIDATE CONSTRAINT ck_memories_created_at_range; END IF; END $$"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE memories DROP CONSTRAINT ck_memories_created_at_range")
