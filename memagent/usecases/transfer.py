"""Export and import of memories as JSON lines: streamed out, bulk-loaded in through binary COPY.

One line per memory: namespace, session_id, content, metadata, created_at (ISO 8601), embedding_model,
what learning knows of it (kind, importance, validity, links: memagent.usecases.references) and embedding.
Export writes the embedding as base64 of little-endian float32 values (as the OpenAI API's
`encoding_format="base64"` does): exact, half the size of decimal text, and about ten times faster to read
back. Import takes that or a JSON list of numbers.

Import (the file is read by memagent.usecases.importfile) is idempotent (identical content in a namespace is
stored once) and resumable: every batch commits on its own, and a re-run skips what is stored already before
embedding anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pybase64

from memagent.errors import InputError, ProviderError
from memagent.store.bulk import EncodedBatch
from memagent.store.scope import Scope
from memagent.usecases.importfile import ParsedBatch, ParseOptions, parse_file
from memagent.usecases.lines import count_lines
from memagent.usecases.maintenance import IndexMaintenance
from memagent.usecases.references import LinkSummary, References, learning_fields
from memagent.usecases.service import MemoryService
from memagent.validation import ALL_NAMESPACES, clean_name, existing_file

# Lines per import batch; each batch commits on its own.
BATCH = 5000
# Texts embedded per step of an import (progress is reported after each).
EMBED_CHUNK = 256


class ImportProgress(Protocol):
    """What an import reports while it runs."""

    def loaded(self, lines: int, size: int) -> None:
        """A batch of `lines` lines (`size` bytes of the file) is stored."""

    def embedded(self, done: int, total: int) -> None:
        """`done` of the `total` texts of the batch being prepared are embedded."""


@dataclass
class ImportSummary:
    """What an import did."""

    added: int = 0
    skipped: int = 0  # stored already (an earlier run, or identical content earlier in the file)
    embedded: int = 0  # lines whose vectors were (re)computed because the file's model differs or is absent
    pending: int = 0  # lines stored with their embedding pending: the provider failed (backfill embeds them)
    pending_reason: str | None = None
    failed: list[tuple[int, str]] = field(default_factory=list)
    links: LinkSummary = field(default_factory=LinkSummary)  # links and replacements restored at the end

    def merge(self, other: ImportSummary) -> None:
        self.added += other.added
        self.skipped += other.skipped
        self.embedded += other.embedded
        self.pending += other.pending
        self.pending_reason = self.pending_reason or other.pending_reason
        self.failed.extend(other.failed)


def export_line(row: Any) -> str:
    """One memory as a JSON line (the vector as base64 of its little-endian float32 values), with what
    learning knows of it (memagent.usecases.references)."""
    record: dict[str, Any] = {
        "namespace": row.namespace,
        "session_id": row.session_id,
        "content": row.content,
        "metadata": row.metadata or {},
        "created_at": row.created_at.isoformat(),
        "embedding_model": row.embedding_model,
        **learning_fields(row),
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
        with self.memory.unit(scope.namespace if scope is not None else ALL_NAMESPACES) as store:
            for row in store.bulk.iter_all(scope, with_embeddings=with_embeddings):
                yield export_line(row)

    def import_file(
        self,
        path: Path,
        *,
        namespace: str | None = None,
        batch_size: int = BATCH,
        notify: Callable[[str], None] | None = None,
        progress: ImportProgress | None = None,
        summary: ImportSummary | None = None,
    ) -> ImportSummary:
        """Load memories from a JSON-lines file: idempotent, resumable, through binary COPY.

        namespace puts every memory in that namespace. A large load into a small table goes without the
        vector index (IndexMaintenance.bulk_load; notify says so). progress hears of every loaded batch and
        of the embedding within a batch. summary, if given, is filled batch by batch as each commits (a
        caller interrupted midway still knows what was stored).
        """
        existing_file(path)
        if not 1 <= batch_size <= 100_000:
            raise InputError(f"the batch size must be between 1 and 100000, not {batch_size}.")
        say = notify or (lambda _: None)
        settings, embedder = self.memory.settings, self.memory.embedder
        options = ParseOptions(
            namespace=namespace,
            default_namespace=settings.namespace,
            session_id=settings.session_id,
            model=embedder.model,
            dim=embedder.dim,
        )
        summary = summary if summary is not None else ImportSummary()
        references = References()
        bulk = IndexMaintenance(self.memory).bulk_load(lambda enough: count_lines(path, stop_at=enough), say)
        with bulk as without_index:
            if without_index:
                say("Large import: loading without the vector index, then building it once.")
            batches = self.import_batches(parse_file(path, batch_size, options), progress, landed=summary)
            for batch, _ in batches:  # (each batch's counts are merged into summary as it lands)
                references.merge(batch.references)
                if progress is not None:
                    progress.loaded(batch.lines, batch.bytes_read)
        summary.links = references.restore(self.memory.unit)  # every line is stored: the ids all resolve
        return summary

    def import_batches(
        self,
        batches: Iterable[ParsedBatch],
        progress: ImportProgress | None = None,
        *,
        landed: ImportSummary | None = None,
    ) -> Iterator[tuple[ParsedBatch, ImportSummary]]:
        """Import batch after batch, writing one batch while the next is prepared; yields (batch, summary).

        The COPY and commit of batch n run in a writer thread (psycopg2 releases the GIL while the server
        works) while this thread checks, embeds and builds batch n + 1. A duplicate across two batches in
        flight is caught by the unique constraint and skipped (BulkRepository.copy_add). Stopped midway (a
        Ctrl-C, an error), the batch being written is waited for, and what it stored merged into `landed`.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="memagent-copy") as writer:
            in_flight: tuple[ParsedBatch, Future[ImportSummary]] | None = None
            try:
                for batch in batches:
                    prepared = self._prepare(batch, progress)
                    if in_flight is not None:
                        written, in_flight = self._landed(in_flight, landed), None
                        yield written
                    in_flight = batch, writer.submit(self._write, *prepared)
                if in_flight is not None:
                    written, in_flight = self._landed(in_flight, landed), None
                    yield written
            except BaseException:
                if in_flight is not None and landed is not None:
                    with suppress(Exception):  # (a batch that failed stored nothing)
                        self._landed(in_flight, landed)
                raise

    @staticmethod
    def _landed(
        in_flight: tuple[ParsedBatch, Future[ImportSummary]], landed: ImportSummary | None
    ) -> tuple[ParsedBatch, ImportSummary]:
        """A batch written: what it did, merged into `landed` at once (its failed lines included)."""
        batch, done = in_flight[0], in_flight[1].result()
        if landed is not None:
            landed.failed.extend(batch.failed)
            landed.merge(done)
        return batch, done

    def _prepare(
        self, batch: ParsedBatch, progress: ImportProgress | None
    ) -> tuple[ImportSummary, EncodedBatch]:
        summary = ImportSummary(skipped=batch.duplicates)
        to_embed = batch.to_embed
        with self.memory.unit(ALL_NAMESPACES) as store:  # a file may hold many namespaces
            self.memory.check_embedding_space(store, claim=False)
            stored = store.bulk.existing([*batch.keys, *((r.namespace, r.digest) for r in to_embed)])
        count, rows = batch.rows_except(stored)
        to_embed = [r for r in to_embed if (r.namespace, r.digest) not in stored]
        summary.skipped += len(batch.keys) + len(batch.to_embed) - count - len(to_embed)
        embedded: list[bytes] = []
        embedder, now = self.memory.embedder, datetime.now(UTC)
        for start in range(0, len(to_embed), EMBED_CHUNK):  # in chunks, so progress can show each one
            part = to_embed[start : start + EMBED_CHUNK]
            try:
                vectors: Any = embedder.embed([r.content for r in part])
            except ProviderError as exc:  # as remember does: store the text now, embed it later (backfill)
                vectors = [None] * len(part)
                summary.pending += len(part)
                summary.pending_reason = exc.message
            embedded += [r.copy_row(v, embedder.model, now) for r, v in zip(part, vectors, strict=True)]
            if progress is not None:
                progress.embedded(len(embedded), len(to_embed))
        summary.embedded = len(to_embed) - summary.pending
        return summary, EncodedBatch.of([rows, *embedded], count + len(embedded))

    def _write(self, summary: ImportSummary, batch: EncodedBatch) -> ImportSummary:
        if not batch.rows:
            return summary
        # As the login role: PostgreSQL refuses COPY FROM under row-level security, and an import spans
        # the namespaces its file names anyway.
        with self.memory.unit(admin=True) as store:
            self.memory.check_embedding_space(store, claim=True)
            added = store.bulk.copy_add(batch)
        summary.added = added
        summary.skipped += batch.rows - added  # written by a concurrent import meanwhile
        return summary
