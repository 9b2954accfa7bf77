"""ItemRepository: memories that are key-value items (a key under ITEM in their metadata), as key-value
stores such as LangGraph's BaseStore see them. Takes a Session, never commits."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, select, text
from sqlalchemy.orm import Session

from memagent.records import MemoryRecord
from memagent.store.models import MemoryRow
from memagent.store.scope import RECORD_COLUMNS, to_record

# The metadata field that makes a memory an item: {"key": …, "value": {…}, "created_at": …, "updated_at": …}.
# One field of its own, so an item's parts never mix with metadata a caller gives remember().
ITEM = "store_item"


def not_an_item() -> ColumnElement[bool]:
    """Memories that are not key-value items: learning and compression leave items alone (an item is what
    an application put under a key, not something a user said)."""
    held: ColumnElement[bool] = MemoryRow.metadata_.has_key(ITEM)
    return ~held


# Transaction-scoped, on a hash of namespace and key (the learning lock's pattern, memagent.store.lifecycle).
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('memagent.item:' || :ns || chr(1) || :key, 0))"


def _keyed(namespace: str, key: str) -> ColumnElement[bool]:
    # Written as ix_memories_item_key (revision 0015) is built, so that a lookup is one probe of it: the
    # partial index's predicate (metadata ? 'store_item') and its key expression.
    return and_(
        MemoryRow.metadata_.has_key(ITEM),
        MemoryRow.namespace == namespace,
        MemoryRow.metadata_[ITEM]["key"].astext == key,
    )


class ItemRepository:
    """Finds, deletes and lists items by namespace and key, in the caller's session and transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self, namespace: str, key: str) -> None:
        """Hold the key until the transaction ends, so two puts of one key cannot both find it absent and
        leave two items (a transaction-scoped advisory lock on a hash of namespace and key; a collision
        only makes two unrelated puts wait for each other)."""
        self.session.execute(
            text(
                "SELECT pg_advisory_xact_lock(hashtextextended('memagent.item:' || :ns || chr(1) || :key, 0))"
            ),
            {"ns": namespace, "key": key},
        )

    def find(self, namespace: str, key: str) -> MemoryRecord | None:
        """The item `key` of the namespace (the newest, should two ever hold it), or None."""
        stmt = select(*RECORD_COLUMNS).where(_keyed(namespace, key)).order_by(MemoryRow.id.desc()).limit(1)
        row = self.session.execute(stmt).first()
        return None if row is None else to_record(row)

    def delete(self, namespace: str, key: str) -> list[MemoryRecord]:
        """Delete the item `key` of the namespace; returns what was deleted (empty: there was none)."""
        stmt = delete(MemoryRow).where(_keyed(namespace, key)).returning(*RECORD_COLUMNS)
        return [to_record(row) for row in self.session.execute(stmt).all()]

    def listed(
        self, namespaces: Sequence[str], *, limit: int | None = None, offset: int = 0
    ) -> list[MemoryRecord]:
        """The items of these namespaces, most recently stored first (limit None: all of them)."""
        stmt = (
            select(*RECORD_COLUMNS)
            .where(MemoryRow.namespace.in_(list(namespaces)), MemoryRow.metadata_.has_key(ITEM))
            .order_by(MemoryRow.created_at.desc(), MemoryRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [to_record(row) for row in self.session.execute(stmt).all()]

    def namespaces(self) -> list[str]:
        """The namespaces that hold items (those this transaction can see), sorted."""
        stmt = select(MemoryRow.namespace).where(MemoryRow.metadata_.has_key(ITEM)).distinct()
        return sorted(self.session.scalars(stmt))
