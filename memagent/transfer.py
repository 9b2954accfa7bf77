"""Export and import of memories as JSON lines: streamed out, bulk-loaded in through binary COPY.

One line per memory: namespace, session_id, content, metadata, created_at (ISO 8601), embedding_model and
embedding. Import is idempotent (identical content in a namespace is stored once) and resumable: every batch
commits on its own, and a re-run skips what is stored already before embedding anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from memagent.bulk import BulkRepository
from memagent.errors import InputError
from memagent.repository import NewMemory, Scope, content_hash
from memagent.service import MemoryService, clean_metadata, clean_name, clean_text


@dataclass(frozen=True)
class ImportRecord:
    """One parsed line of an import file."""

    line: int
    namespace: str
    session_id: str
    content: str
    metadata: dict[str, Any]
    created_at: datetime | None
    embedding_model: str | None
    embedding: np.ndarray | None


@dataclass
class ImportSummary:
    """What an import did."""

    added: int = 0
    skipped: int = 0  # stored already (an earlier run, or identical content earlier in the file)
    embedded: int = 0  # lines whose vectors were (re)computed because the file's model differs or is absent
    failed: list[tuple[int, str]] = field(default_factory=list)

    def merge(self, other: ImportSummary) -> None:
        self.added += other.added
        self.skipped += other.skipped
        self.embedded += other.embedded
        self.failed.extend(other.failed)


def export_line(row: Any) -> str:
    """One memory as a JSON line (vectors printed with 9 significant digits: exact for float32)."""
    record: dict[str, Any] = {
        "namespace": row.namespace,
        "session_id": row.session_id,
        "content": row.content,
        "metadata": row.metadata or {},
        "created_at": row.created_at.isoformat(),
        "embedding_model": row.embedding_model,
    }
    text = json.dumps(record, ensure_ascii=False)
    embedding = getattr(row, "embedding", None)
    if embedding is not None:
        vector = ",".join(f"{x:.9g}" for x in np.asarray(embedding, dtype=np.float32).tolist())
        text = text[:-1] + f', "embedding": [{vector}]}}'
    return text + "\n"


def parse_line(
    raw: bytes, line: int, *, namespace: str | None, default_namespace: str, session: str
) -> ImportRecord:
    """Parse and validate one line; raises InputError naming what is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise InputError("not a JSON object")
    if "content" not in data:
        raise InputError("content is missing")
    content = clean_text(data["content"], "content")
    ns = clean_name(namespace or str(data.get("namespace") or default_namespace), "namespace")
    sid = clean_name(str(data.get("session_id") or session), "session")
    created_at = None
    if data.get("created_at") is not None:
        try:
            created_at = datetime.fromisoformat(str(data["created_at"]))
        except ValueError:
            raise InputError(f"created_at {str(data['created_at'])[:40]!r} is not an ISO 8601 date") from None
        if created_at.tzinfo is None:
            created_at = created_at.astimezone()
    embedding = None
    if data.get("embedding") is not None:
        values = data["embedding"]
        if not isinstance(values, list) or not values or not all(isinstance(v, int | float) for v in values):
            raise InputError("embedding is not a list of numbers")
        embedding = np.asarray(values, dtype=np.float32)
        if not all(math.isfinite(v) for v in values) or not np.any(embedding):
            raise InputError("embedding has non-finite values or is all zeros")
    return ImportRecord(
        line=line,
        namespace=ns,
        session_id=sid,
        content=content,
        metadata=clean_metadata(data.get("metadata")),
        created_at=created_at,
        embedding_model=str(data["embedding_model"]) if data.get("embedding_model") else None,
        embedding=embedding,
    )


class Transfer:
    """Export and import over a MemoryService's database and embedder."""

    def __init__(self, memory: MemoryService) -> None:
        self.memory = memory

    def export(self, namespace: str | None, *, with_embeddings: bool = True) -> Iterator[str]:
        """JSON lines for one namespace (or all when namespace is None), streamed in one read transaction."""
        scope = Scope(clean_name(namespace, "namespace")) if namespace is not None else None
        with self.memory.unit() as repo:
            for row in BulkRepository(repo.session).iter_all(scope, with_embeddings=with_embeddings):
                yield export_line(row)

    def import_batch(self, records: list[ImportRecord]) -> ImportSummary:
        """Store a batch: skip what exists, reuse vectors of the database's model, embed the rest, COPY."""
        summary = ImportSummary()
        embedder = self.memory.embedder
        with self.memory.unit() as repo:
            self.memory.check_embedding_space(repo, claim=False)
            stored = BulkRepository(repo.session).existing(
                (r.namespace, content_hash(r.content)) for r in records
            )
        fresh: list[ImportRecord] = []
        seen = set(stored)
        for record in records:
            key = (record.namespace, content_hash(record.content))
            if key in seen:
                summary.skipped += 1
            else:
                seen.add(key)
                fresh.append(record)
        reusable = [
            r.embedding is not None
            and r.embedding_model == embedder.model
            and r.embedding.shape == (embedder.dim,)
            for r in fresh
        ]
        to_embed = [r.content for r, ok in zip(fresh, reusable, strict=True) if not ok]
        computed = iter(embedder.embed(to_embed)) if to_embed else iter(())
        summary.embedded = len(to_embed)
        memories = [
            NewMemory(
                namespace=r.namespace,
                session_id=r.session_id,
                content=r.content,
                embedding=r.embedding if ok else next(computed),
                embedding_model=embedder.model,
                metadata=r.metadata,
                created_at=r.created_at,
            )
            for r, ok in zip(fresh, reusable, strict=True)
        ]
        with self.memory.unit() as repo:
            self.memory.check_embedding_space(repo, claim=True)
            added = BulkRepository(repo.session).copy_add(memories)
        summary.added = added
        summary.skipped += len(memories) - added  # written by a concurrent import meanwhile
        return summary
