"""LifecycleRepository: what learning reads and writes besides storing memories — which exchanges wait for
extraction, the current facts a decision may touch, ends of validity, and the memory_events history.
Takes a Session, never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from memagent.records import EventRecord, HistoryEntry, MemoryRecord
from memagent.store.items import not_an_item
from memagent.store.models import MemoryEvent, MemoryRow, MemorySource
from memagent.store.scope import RECORD_COLUMNS, to_record

# Serialises learning within one namespace for the rest of the transaction (two extractions deciding on the
# same facts at once would each see them current): the key is the namespace's name, hashed.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('memagent.learning:' || :namespace, 0))"

# A memory's chain: the memories it replaced (back, through superseded_by) and those that replaced it
# (forward), each once, in the order they were learnt.
_CHAIN = """
WITH RECURSIVE back(id) AS (
    SELECT CAST(:id AS bigint)
    UNION
    SELECT m.id FROM memories m JOIN back b ON m.superseded_by = b.id
),
forward(id) AS (
    SELECT CAST(:id AS bigint)
    UNION
    SELECT m.superseded_by FROM memories m JOIN forward f ON m.id = f.id WHERE m.superseded_by IS NOT NULL
)
SELECT id FROM back UNION SELECT id FROM forward"""


# A fact and its predecessors (those whose superseded_by leads to it): the earliest that holds from after
# :when (the fact itself last in the order, so that it comes back when no other does).
_FIRST_AFTER = """
WITH RECURSIVE back(id) AS (
    SELECT CAST(:id AS bigint)
    UNION
    SELECT m.id FROM memories m JOIN back b ON m.superseded_by = b.id
)
SELECT m.id, m.created_at FROM memories m JOIN back b ON b.id = m.id
WHERE m.created_at > :when OR m.id = :id
ORDER BY m.id = :id, m.created_at, m.id LIMIT 1"""


# An exchange waiting for extraction.
_WAITING = (MemoryRow.kind == "exchange", MemoryRow.extracted_at.is_(None), not_an_item())


class LifecycleRepository:
    """Learning's reads and writes in the caller's session and transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_namespace(self, namespace: str) -> None:
        """Hold the namespace's learning lock until the transaction ends."""
        self.session.execute(text(_LOCK), {"namespace": namespace})

    # -- extraction --------------------------------------------------------------------------------------

    def unextracted(
        self, namespace: str, *, limit: int, ids: Sequence[int] | None = None
    ) -> list[MemoryRecord]:
        """Exchanges of the namespace not yet extracted (archived ones too: compression keeps what they
        said), never tried first, then those whose last try failed longest ago — so exchanges that keep
        failing do not starve the others — oldest first; only `ids` if given."""
        tried = (
            select(func.max(MemoryEvent.created_at))
            .where(MemoryEvent.memory_id == MemoryRow.id, MemoryEvent.action == "extract")
            .correlate(MemoryRow)
            .scalar_subquery()
        )
        stmt = (
            select(*RECORD_COLUMNS)
            .where(*_WAITING, MemoryRow.namespace == namespace)
            .order_by(tried.asc().nulls_first(), MemoryRow.created_at, MemoryRow.id)
            .limit(limit)
        )
        if ids is not None:
            stmt = stmt.where(MemoryRow.id.in_(list(ids)))
        return [to_record(row) for row in self.session.execute(stmt)]

    def unextracted_count(self, namespace: str) -> int:
        """How many exchanges of the namespace wait for extraction."""
        stmt = select(func.count()).select_from(MemoryRow).where(*_WAITING, MemoryRow.namespace == namespace)
        return int(self.session.scalar(stmt) or 0)

    def claim(self, ids: Sequence[int]) -> set[int]:
        """Lock these exchanges and return those still waiting for extraction (another run may have done
        the others meanwhile)."""
        rows = self.session.scalars(
            select(MemoryRow.id)
            .where(MemoryRow.id.in_(list(ids)), MemoryRow.extracted_at.is_(None))
            .with_for_update()
        )
        return {int(row) for row in rows}

    def mark_extracted(self, ids: Sequence[int]) -> None:
        """Record that these exchanges' facts are learnt."""
        self.session.execute(
            update(MemoryRow).where(MemoryRow.id.in_(list(ids))).values(extracted_at=func.now())
        )

    # -- facts ---------------------------------------------------------------------------------------------

    def current_facts(self, ids: Sequence[int]) -> dict[int, datetime]:
        """Which of these memories are facts memagent believes now (locked until the transaction ends):
        id -> when it holds from (created_at)."""
        rows = self.session.execute(
            select(MemoryRow.id, MemoryRow.created_at)
            .where(
                MemoryRow.id.in_(list(ids)),
                MemoryRow.kind == "fact",
                MemoryRow.expired_at.is_(None),
                MemoryRow.archived_at.is_(None),
            )
            .with_for_update()
        )
        return {int(row.id): row.created_at for row in rows}

    def end(self, memory_id: int, *, replaced_by: int | None, invalid_at: datetime | None) -> None:
        """memagent stops believing a memory now (expired_at), optionally pointing at what replaced it;
        invalid_at: when it stopped holding in the conversation, if known."""
        values: dict[str, Any] = {"expired_at": func.now(), "superseded_by": replaced_by}
        if invalid_at is not None:
            values["invalid_at"] = invalid_at
        self.session.execute(update(MemoryRow).where(MemoryRow.id == memory_id).values(**values))

    def record(
        self,
        namespace: str,
        memory_id: int | None,
        action: str,
        *,
        related_id: int | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """One row of memory_events, in the caller's transaction."""
        self.session.execute(
            insert(MemoryEvent).values(
                namespace=namespace,
                memory_id=memory_id,
                action=action,
                related_id=related_id,
                reason=reason,
                details=details or {},
                # The moment of writing, not the transaction's start: under the namespace's learning lock
                # events are written in lock order, and facts_version() relies on that order.
                created_at=func.clock_timestamp(),
            )
        )

    def record_adds(self, namespace: str, memory_ids: Sequence[int], reason: str) -> None:
        """An `add` event for each of these memories, in one statement."""
        if memory_ids:
            self.session.execute(
                insert(MemoryEvent).values(created_at=func.clock_timestamp()),  # see record()
                [
                    {"namespace": namespace, "memory_id": memory_id, "action": "add", "reason": reason}
                    for memory_id in memory_ids
                ],
            )

    def facts_version(self, namespace: str) -> tuple[datetime, int] | None:
        """The namespace's latest change to its facts (an add, update or invalidate event): consolidation
        decides on the facts it saw, and applies only if this has not moved since (else it looks again)."""
        row = self.session.execute(
            select(MemoryEvent.created_at, MemoryEvent.id)
            .where(
                MemoryEvent.namespace == namespace,
                MemoryEvent.action.in_(("add", "update", "invalidate")),
            )
            .order_by(MemoryEvent.created_at.desc(), MemoryEvent.id.desc())
            .limit(1)
        ).first()
        return None if row is None else (row.created_at, int(row.id))

    def first_after(self, fact_id: int, when: datetime) -> tuple[int, datetime]:
        """Of a fact and those it replaced, directly or not, the earliest holding from after `when`: (id, when
        it holds from). The fact itself when none of them does."""
        row = self.session.execute(text(_FIRST_AFTER), {"id": fact_id, "when": when}).one()
        return int(row.id), row.created_at

    # -- history -------------------------------------------------------------------------------------------

    def chain(self, memory_id: int) -> list[HistoryEntry]:
        """The memory, those it replaced and those that replaced it, in the order learnt: each with its
        validity and its sources. Empty when the memory is not one this transaction can see."""
        ids = [int(i) for i in self.session.scalars(text(_CHAIN), {"id": memory_id})]
        rows = self.session.execute(
            select(
                *RECORD_COLUMNS,
                func.coalesce(MemoryRow.learned_at, MemoryRow.created_at).label("learned"),
                MemoryRow.invalid_at,
                MemoryRow.expired_at,
                MemoryRow.superseded_by,
                MemoryRow.archived_at,
            )
            .where(MemoryRow.id.in_(ids))
            .order_by(func.coalesce(MemoryRow.learned_at, MemoryRow.created_at), MemoryRow.id)
        ).all()
        sources: dict[int, list[int]] = {}
        for memory, source in self.session.execute(
            select(MemorySource.memory_id, MemorySource.source_id)
            .where(MemorySource.memory_id.in_(ids))
            .order_by(MemorySource.source_id)
        ):
            sources.setdefault(int(memory), []).append(int(source))
        return [
            HistoryEntry(
                to_record(row),
                row.learned,
                row.invalid_at,
                row.expired_at,
                row.superseded_by,
                row.archived_at,
                tuple(sources.get(int(row.id), ())),
            )
            for row in rows
        ]

    def events(self, memory_ids: Sequence[int]) -> list[EventRecord]:
        """The events about these memories (as the memory changed or as the one related), oldest first."""
        ids = list(memory_ids)
        rows = self.session.execute(
            select(MemoryEvent)
            .where((MemoryEvent.memory_id.in_(ids)) | (MemoryEvent.related_id.in_(ids)))
            .order_by(MemoryEvent.id)
        ).scalars()
        return [
            EventRecord(
                e.id, e.memory_id, e.action, e.related_id, e.reason, dict(e.details or {}), e.created_at
            )
            for e in rows
        ]
