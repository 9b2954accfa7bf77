"""ArchiveRepository: what compression reads and writes — old exchanges by session, archiving them into a
summary (with their events), and archived memories counted and purged. Takes a Session, never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select, text, update
from sqlalchemy.orm import Session

from memagent.records import MemoryRecord
from memagent.store.items import not_an_item
from memagent.store.models import MemoryRow
from memagent.store.scope import RECORD_COLUMNS, Scope, to_record

# One 'archive' event per source, naming the summary it went into, in one statement (a session may hold
# hundreds of exchanges); only memories of the namespace this transaction can see.
_ARCHIVE_EVENTS = """
INSERT INTO memory_events (namespace, memory_id, action, related_id)
SELECT m.namespace, m.id, 'archive', :summary_id
FROM memories m
WHERE m.id = ANY(CAST(:ids AS bigint[])) AND m.namespace = :namespace"""


@dataclass(frozen=True)
class OldSession:
    """A session with exchanges old enough to compress: how many, and the oldest one's date."""

    session_id: str
    exchanges: int
    oldest: datetime


class ArchiveRepository:
    """Compression's reads and writes in the caller's session and transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _old(self, namespace: str, before: datetime) -> list[ColumnElement[bool]]:
        return [
            MemoryRow.namespace == namespace,
            MemoryRow.kind == "exchange",
            MemoryRow.archived_at.is_(None),
            MemoryRow.created_at < before,
            not_an_item(),
        ]

    def old_sessions(
        self, namespace: str, before: datetime, session_id: str | None = None
    ) -> list[OldSession]:
        """Sessions of the namespace with unarchived exchanges created before `before`, oldest first."""
        oldest = func.min(MemoryRow.created_at)
        stmt = (
            select(MemoryRow.session_id, func.count(), oldest)
            .where(*self._old(namespace, before))
            .group_by(MemoryRow.session_id)
            .order_by(oldest, MemoryRow.session_id)
        )
        if session_id is not None:
            stmt = stmt.where(MemoryRow.session_id == session_id)
        return [OldSession(str(s), int(n), first) for s, n, first in self.session.execute(stmt)]

    def old_exchanges(self, namespace: str, session_id: str, before: datetime) -> list[MemoryRecord]:
        """A session's unarchived exchanges created before `before`, oldest first."""
        stmt = (
            select(*RECORD_COLUMNS)
            .where(*self._old(namespace, before), MemoryRow.session_id == session_id)
            .order_by(MemoryRow.created_at, MemoryRow.id)
        )
        return [to_record(row) for row in self.session.execute(stmt)]

    def lock_unarchived(self, ids: Sequence[int]) -> set[int]:
        """Lock these memories and return those not archived yet (another run may have archived some)."""
        rows = self.session.scalars(
            select(MemoryRow.id)
            .where(MemoryRow.id.in_(list(ids)), MemoryRow.archived_at.is_(None))
            .with_for_update()
        )
        return {int(row) for row in rows}

    def archive(self, namespace: str, ids: Sequence[int], *, into: int) -> int:
        """Archive these memories of the namespace (kept, recalled only when asked for), each with an
        'archive' event naming the summary `into`; returns how many were archived."""
        result = self.session.execute(
            update(MemoryRow)
            .where(MemoryRow.id.in_(list(ids)), MemoryRow.namespace == namespace)
            .values(archived_at=func.now())
        )
        self.session.execute(
            text(_ARCHIVE_EVENTS), {"ids": list(ids), "namespace": namespace, "summary_id": into}
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def archived_count(self, scope: Scope, *, unlearnt: bool = False) -> int:
        """How many archived memories are in scope (unlearnt: only exchanges never extracted)."""
        stmt = (
            select(func.count())
            .select_from(MemoryRow)
            .where(scope.where(), MemoryRow.archived_at.is_not(None))
        )
        if unlearnt:
            stmt = stmt.where(MemoryRow.kind == "exchange", MemoryRow.extracted_at.is_(None), not_an_item())
        return int(self.session.execute(stmt).scalar_one())

    def purge_archived(self, scope: Scope) -> int:
        """Delete the archived memories in scope for good (their links and events go with them)."""
        result = self.session.execute(
            delete(MemoryRow).where(scope.where(), MemoryRow.archived_at.is_not(None))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
