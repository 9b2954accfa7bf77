"""an index on key-value items' keys: the LangGraph store's get and put find an item in one probe

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

memagent.integrations.langgraph keeps each item as a memory whose metadata holds its key under
"store_item" (memagent.store.items). Finding an item by key read every memory of the namespace; this partial
expression index holds only items, by namespace and key, so get, put (which replaces by key) and delete
are one index probe whatever else the namespace holds. Memories that are not items are not in it, so
ordinary remembering pays nothing for it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_memories_item_key ON memories (namespace, ((metadata -> 'store_item') ->> 'key'))"
        " WHERE metadata ? 'store_item'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_memories_item_key")
