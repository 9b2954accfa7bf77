"""embeddings kept in the row: toast_tuple_target 8160 on memories

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

pgvector's types are stored EXTERNAL, and PostgreSQL moves a row's largest values out of line into the
TOAST table as soon as the row passes about 2 kB: a 384-dimension embedding (1.5 kB) beside a few hundred
characters of text, and every 1536-dimension one (6 kB), lived in pg_toast, so reading a memory's vector
cost three more page reads (the TOAST index, then its heap) and storing one wrote two more index and heap
entries. With toast_tuple_target at its largest (8160 bytes, about a page) a row is compressed or moved out
of line only when it would not fit a page otherwise: the exact scan of a small namespace reads one page
per memory instead of four (docs/benchmarks.md, "Embeddings in the row").

The setting applies to rows written from now on (storing, re-embedding); rows already stored keep their
out-of-line vectors until the table is rewritten (`VACUUM FULL memories`, which locks the table while it
runs) — the upgrade does not rewrite a table that may be large.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOAST_TUPLE_TARGET = 8160  # PostgreSQL's maximum (TOAST_TUPLE_TARGET_MAIN for 8 kB pages)


def upgrade() -> None:
    op.execute(f"ALTER TABLE memories SET (toast_tuple_target = {TOAST_TUPLE_TARGET})")


def downgrade() -> None:
    op.execute("ALTER TABLE memories RESET (toast_tuple_target)")
