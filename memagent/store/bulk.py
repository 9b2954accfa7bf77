"""Bulk reads and writes for export, import and re-embedding: server-side cursors and binary COPY."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2.errors
from sqlalchemy import exists, func, or_, select, text
from sqlalchemy.orm import Session, aliased

from memagent.store import pgcopy
from memagent.store.memories import LINK_SOURCES, NewMemory, content_hash
from memagent.store.models import MemoryRow, MemorySource
from memagent.store.scope import RECORD_COLUMNS, Scope

# A memory as import writes it: what it said, then what learning knows of it (revision 0013). The links
# between memories (memory_sources, superseded_by) are written after the rows, by ids (usecases.references).
_COLUMNS = (
    "namespace, session_id, content, embedding, embedding_model, content_hash, metadata, created_at,"
    " kind, importance, invalid_at, learned_at, expired_at, archived_at, extracted_at"
)
_ON_COMMIT = "ON COMMIT DELETE ROWS"
_STAGE_COLUMNS = (
    "namespace text, session_id text, content text, embedding vector, embedding_model text,"
    " content_hash text, metadata jsonb, created_at timestamptz, kind varchar(16), importance real,"
    " invalid_at timestamptz, learned_at timestamptz, expired_at timestamptz, archived_at timestamptz,"
    " extracted_at timestamptz"
)


_EXISTING = text(
    "SELECT content_hash FROM memories WHERE namespace = :namespace AND content_hash = ANY(:hashes)"
)
_ENCODERS = pgcopy.encoders(
    ["text", "text", "text", "vector", "text", "text", "jsonb", "timestamptz", "text", "real"]
    + ["timestamptz"] * 5
)


@dataclass(frozen=True)
class Lifecycle:
    """What an imported memory's file says of its life beyond kind and importance (None: not said)."""

    invalid_at: datetime | None = None
    learned_at: datetime | None = None  # None: learned now, by this import (as any write)
    expired_at: datetime | None = None
    archived_at: datetime | None = None
    extracted_at: datetime | None = None


@dataclass(frozen=True)
class EncodedBatch:
    """Memories as a binary COPY stream, duplicates (same namespace and content) dropped."""

    rows: int
    payload: bytes

    @classmethod
    def of(cls, rows: Sequence[bytes], count: int | None = None) -> EncodedBatch:
        """A batch of rows from encode_row (the caller has dropped duplicates).

        `count` says how many rows there are when some of the pieces hold several rows back to back.
        """
        return cls(len(rows) if count is None else count, pgcopy.stream(rows))


def encode_row(memory: NewMemory, digest: str, now: datetime, life: Lifecycle | None = None) -> bytes:
    """One memory as a row of the COPY stream (`now` stands in for a missing created_at and learned_at)."""
    m = memory
    life = life or _CURRENT
    return pgcopy.encode_row(
        (
            m.namespace,
            m.session_id,
            m.content,
            m.embedding,
            m.embedding_model,
            digest,
            m.metadata,
            m.created_at or now,
            m.kind,
            m.importance,
            life.invalid_at,
            life.learned_at or now,
            life.expired_at,
            life.archived_at,
            life.extracted_at,
        ),
        _ENCODERS,
    )


_CURRENT = Lifecycle()


def encode(memories: Sequence[NewMemory]) -> EncodedBatch:
    """Encode memories for copy_add (pure computation: no database involved)."""
    unique: dict[tuple[str, str], NewMemory] = {}
    for m in memories:
        unique.setdefault((m.namespace, content_hash(m.content)), m)
    now = datetime.now(UTC)
    return EncodedBatch.of([encode_row(m, digest, now) for (_, digest), m in unique.items()])


# What export writes beyond RECORD_COLUMNS: validity, belief, archiving, extraction, the memories a fact or
# summary came from, and whether another memory refers to this one (then the file needs its id: one probe
# of each index on the referring columns, so a file of exchanges alone carries no ids to map on import).
_SOURCE = aliased(MemorySource)
_REFERRING = aliased(MemoryRow)
LIFECYCLE_COLUMNS = (
    MemoryRow.invalid_at,
    MemoryRow.learned_at,
    MemoryRow.expired_at,
    MemoryRow.superseded_by,
    MemoryRow.archived_at,
    MemoryRow.extracted_at,
    func.array(
        select(_SOURCE.source_id)
        .where(_SOURCE.memory_id == MemoryRow.id)
        .order_by(_SOURCE.source_id)
        .scalar_subquery()
    ).label("sources"),
    or_(
        exists().where(_SOURCE.source_id == MemoryRow.id),
        exists().where(_REFERRING.superseded_by == MemoryRow.id),
    ).label("referenced"),
)

# The ids of stored memories by content, and the links import restores between them (ids of one namespace:
# the caller has checked; a link or replacement already there is left as it is).
_IDS = text(
    "SELECT content_hash, id FROM memories WHERE namespace = :namespace AND content_hash = ANY(:hashes)"
)
_SUPERSEDE = text(
    "UPDATE memories m SET superseded_by = s.new_id"
    " FROM unnest(CAST(:ids AS bigint[]), CAST(:targets AS bigint[])) AS s(id, new_id)"
    " WHERE m.id = s.id AND m.superseded_by IS NULL"
)


class BulkRepository:
    """Many memories at a time, in the caller's session and transaction (never commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def analyze(self) -> None:
        """The planner's statistics of memories, anew after a load that dwarfs what they were taken of
        (autovacuum would take them later: until then recall plans blind, 0.4-0.6 ms more per vector recall
        at 20k x 1536, docs/benchmarks.md)."""
        self.session.execute(text("ANALYZE memories"))

    def existing(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (namespace, content_hash) pairs are stored already."""
        wanted: dict[str, list[str]] = {}
        for namespace, digest in keys:
            wanted.setdefault(namespace, []).append(digest)
        found: set[tuple[str, str]] = set()
        for namespace, hashes in wanted.items():
            rows = self.session.execute(_EXISTING, {"namespace": namespace, "hashes": hashes})
            found |= {(namespace, digest) for (digest,) in rows}
        return found

    def ids(self, namespace: str, hashes: Sequence[str]) -> dict[str, int]:
        """The ids of the namespace's memories with these content hashes (by hash)."""
        rows = self.session.execute(_IDS, {"namespace": namespace, "hashes": list(hashes)})
        return {digest: int(memory_id) for digest, memory_id in rows}

    def restore_links(self, namespace: str, sources: Sequence[tuple[int, int]]) -> int:
        """Link memories to their sources, (memory id, source id) pairs of the namespace; returns how many
        links are new."""
        if not sources:
            return 0
        memory_ids, source_ids = zip(*sources, strict=True)
        result = self.session.execute(
            text(LINK_SOURCES),
            {"memory_ids": list(memory_ids), "source_ids": list(source_ids), "namespace": namespace},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def restore_superseded(self, replaced: Sequence[tuple[int, int]]) -> int:
        """Point memories to what replaced them, (memory id, replacement id) pairs of one namespace, unless
        they point somewhere already; returns how many were set."""
        if not replaced:
            return 0
        ids, targets = zip(*replaced, strict=True)
        result = self.session.execute(_SUPERSEDE, {"ids": list(ids), "targets": list(targets)})
        return int(result.rowcount)  # type: ignore[attr-defined]

    def copy_add(self, memories: Sequence[NewMemory] | EncodedBatch) -> int:
        """Bulk-store memories through binary COPY; returns how many were new.

        Identical content in a namespace is kept once. COPY cannot skip conflicts, so the batch (duplicates
        within it dropped) is first copied straight into memories under a savepoint: one write per row, the
        fast path when the caller has filtered out stored rows with existing(). If a row turns out to be
        stored already (a concurrent import), the savepoint is rolled back and the batch goes through a
        temporary table and INSERT ... SELECT ... ON CONFLICT DO NOTHING instead.
        Memories may come pre-encoded (encode()), so that encoding can run while another batch loads.
        """
        batch = memories if isinstance(memories, EncodedBatch) else encode(memories)
        if not batch.rows:
            return 0
        try:
            with self.session.begin_nested():
                self._copy(f"memories ({_COLUMNS})", batch.payload)
            return batch.rows
        except psycopg2.errors.UniqueViolation:
            pass  # some rows are stored already: take the conflict-skipping path
        self.session.execute(
            text(f"CREATE TEMP TABLE IF NOT EXISTS memagent_import_stage ({_STAGE_COLUMNS}) {_ON_COMMIT}")
        )
        self._copy("memagent_import_stage", batch.payload)
        result = self.session.execute(
            text(
                f"INSERT INTO memories ({_COLUMNS}) SELECT {_COLUMNS} FROM memagent_import_stage"
                " ON CONFLICT ON CONSTRAINT uq_memories_namespace_content_hash DO NOTHING"
            )
        )
        self.session.execute(text("TRUNCATE memagent_import_stage"))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _copy(self, target: str, payload: bytes) -> None:
        raw = self.session.connection().connection.dbapi_connection
        assert raw is not None
        cursor: Any = raw.cursor()
        try:
            cursor.copy_expert(
                f"COPY {target} FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload), size=1 << 20
            )
        finally:
            cursor.close()

    def iter_all(self, scope: Scope | None, *, with_embeddings: bool, batch: int = 1000) -> Iterator[Any]:
        """Every memory in scope (or in every namespace), oldest first, streamed from a server-side cursor;
        with what learning knows of it (LIFECYCLE_COLUMNS)."""
        columns = [*RECORD_COLUMNS, *LIFECYCLE_COLUMNS]
        if with_embeddings:
            columns.append(MemoryRow.embedding)
        stmt = select(*columns).order_by(MemoryRow.id)
        if scope is not None:
            stmt = stmt.where(scope.where())
        result = self.session.execute(stmt.execution_options(yield_per=batch))
        yield from result
