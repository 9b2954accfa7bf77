"""Export and import of memories as JSON lines: streamed out, bulk-loaded in through binary COPY.

One line per memory: namespace, session_id, content, metadata, created_at (ISO 8601), embedding_model and
embedding. Export writes the embedding as base64 of little-endian float32 values (as the OpenAI API's
`encoding_format="base64"` does): exact, half the size of decimal text, and about ten times faster to read
back. Import takes that or a JSON list of numbers.

Import (the file is read by memagent.importfile) is idempotent (identical content in a namespace is stored
once) and resumable: every batch commits on
its own, and a re-run skips what is stored already before embedding anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pybase64

from memagent.bulk import BulkRepository, EncodedBatch
from memagent.importfile import ParsedBatch
from memagent.repository import Scope
from memagent.service import MemoryService, clean_name


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
    """One memory as a JSON line (the vector as base64 of its little-endian float32 values)."""
    record: dict[str, Any] = {
        "namespace": row.namespace,
        "session_id": row.session_id,
        "content": row.content,
        "metadata": row.metadata or {},
        "created_at": row.created_at.isoformat(),
        "embedding_model": row.embedding_model,
    }
    embedding = getattr(row, "embedding", None)
    if embedding is not None:
        record["embedding"] = pybase64.b64encode(np.asarray(embedding, dtype="<f4").tobytes()).decode("ascii")
    return json.dumps(record, ensure_ascii=False) + "\n"


class Transfer:
    """Export and import over a MemoryService's database and embedder."""

    def __init__(self, memory: MemoryService) -> None:
        self.memory = memory

    def export(self, namespace: str | None, *, with_embeddings: bool = True) -> Iterator[str]:
        """JSON lines for one namespace (or all when namespace is None), streamed in one read transaction."""
        scope = Scope(clean_name(namespace, "namespace")) if namespace is not None else None
        with self.memory.unit(scope.namespace if scope is not None else "*") as repo:
            for row in BulkRepository(repo.session).iter_all(scope, with_embeddings=with_embeddings):
                yield export_line(row)

    def import_batches(self, batches: Iterable[ParsedBatch]) -> Iterator[tuple[ParsedBatch, ImportSummary]]:
        """Import batch after batch, writing one batch while the next is prepared; yields (batch, summary).

        The COPY and commit of batch n run in a writer thread (psycopg2 releases the GIL while the server
        works) while this thread checks, embeds and builds batch n + 1. A duplicate across two batches in
        flight is caught by the unique constraint and skipped (BulkRepository.copy_add).
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="memagent-copy") as writer:
            in_flight: tuple[ParsedBatch, Future[ImportSummary]] | None = None
            for batch in batches:
                prepared = self._prepare(batch)
                if in_flight is not None:
                    yield in_flight[0], in_flight[1].result()
                in_flight = batch, writer.submit(self._write, *prepared)
            if in_flight is not None:
                yield in_flight[0], in_flight[1].result()

    def _prepare(self, batch: ParsedBatch) -> tuple[ImportSummary, EncodedBatch]:
        summary = ImportSummary(skipped=batch.duplicates)
        to_embed = batch.to_embed
        with self.memory.unit("*") as repo:  # a file may hold many namespaces
            self.memory.check_embedding_space(repo, claim=False)
            stored = BulkRepository(repo.session).existing(
                [*batch.keys, *((r.namespace, r.digest) for r in to_embed)]
            )
        count, rows = batch.rows_except(stored)
        to_embed = [r for r in to_embed if (r.namespace, r.digest) not in stored]
        summary.skipped += len(batch.keys) + len(batch.to_embed) - count - len(to_embed)
        embedded: list[bytes] = []
        if to_embed:
            embedder = self.memory.embedder
            vectors = embedder.embed([r.content for r in to_embed])
            now = datetime.now(UTC)
            embedded = [r.copy_row(v, embedder.model, now) for r, v in zip(to_embed, vectors, strict=True)]
        summary.embedded = len(to_embed)
        return summary, EncodedBatch.of([rows, *embedded], count + len(embedded))

    def _write(self, summary: ImportSummary, batch: EncodedBatch) -> ImportSummary:
        if not batch.rows:
            return summary
        # As the login role: PostgreSQL refuses COPY FROM under row-level security, and an import spans
        # the namespaces its file names anyway.
        with self.memory.unit(admin=True) as repo:
            self.memory.check_embedding_space(repo, claim=True)
            added = BulkRepository(repo.session).copy_add(batch)
        summary.added = added
        summary.skipped += batch.rows - added  # written by a concurrent import meanwhile
        return summary
