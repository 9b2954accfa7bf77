"""Export and import of memories as JSON lines: streamed out, bulk-loaded in through binary COPY.

One line per memory: namespace, session_id, content, metadata, created_at (ISO 8601), embedding_model and
embedding. Export writes the embedding as base64 of little-endian float32 values (as the OpenAI API's
`encoding_format="base64"` does): exact, half the size of decimal text, and about ten times faster to read
back. Import takes that or a JSON list of numbers.

Import is idempotent (identical content in a namespace is stored once) and resumable: every batch commits on
its own, and a re-run skips what is stored already before embedding anything.
"""

from __future__ import annotations

import binascii
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from queue import Full, Queue
from typing import Any, TypeVar

import numpy as np
import pybase64

from memagent.bulk import BulkRepository, EncodedBatch, encode
from memagent.errors import InputError, MemagentError
from memagent.repository import NewMemory, Scope, content_hash
from memagent.service import MemoryService, clean_metadata, clean_name, clean_text

T = TypeVar("T")


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


def parse_embedding(value: Any) -> np.ndarray:
    """A stored vector from an import line: base64 of little-endian float32, or a list of numbers."""
    if isinstance(value, str):
        try:
            raw = pybase64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("embedding is not valid base64") from None
        if not raw or len(raw) % 4:
            raise InputError("embedding is not a whole number of float32 values")
        embedding = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        embedding = np.asarray(value, dtype=np.float32)
    else:
        raise InputError("embedding is neither base64 float32 nor a list of numbers")
    if not np.isfinite(embedding).all() or not np.any(embedding):
        raise InputError("embedding has non-finite values or is all zeros")
    return embedding


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
    embedding = parse_embedding(data["embedding"]) if data.get("embedding") is not None else None
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


@dataclass
class ParsedBatch:
    """Up to `size` lines of an import file, parsed: the good records and the failures by line number."""

    records: list[ImportRecord] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    bytes_read: int = 0


def parse_batches(
    source: Iterable[bytes], *, size: int, namespace: str | None, default_namespace: str, session: str
) -> Iterator[ParsedBatch]:
    """Parse JSON lines in batches of `size` records; blank lines are skipped, bad ones reported."""
    batch = ParsedBatch()
    for number, raw in enumerate(source, start=1):
        batch.bytes_read += len(raw)
        if not raw.strip():
            continue
        try:
            batch.records.append(
                parse_line(
                    raw, number, namespace=namespace, default_namespace=default_namespace, session=session
                )
            )
        except MemagentError as exc:
            batch.failed.append((number, exc.message.rstrip(".")))
        if len(batch.records) >= size:
            yield batch
            batch = ParsedBatch()
    if batch.records or batch.failed or batch.bytes_read:
        yield batch


def count_lines(path: Path) -> int:
    """How many lines a file has (read in 1 MB blocks: about a second per GB)."""
    count = 0
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            count += block.count(b"\n")
    return count


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Produce items in a background thread, up to `depth` ahead of the consumer.

    An import parses JSON while the database loads the previous batch (psycopg2 releases the GIL while it
    waits on the server), so the two overlap on a two-core machine. An error in the producer is raised
    in the consumer; a consumer that stops early stops the producer.
    """
    queue: Queue[tuple[str, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))
            return
        put(("done", None))

    worker = threading.Thread(target=produce, name="memagent-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join(timeout=5)


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

    def import_batch(self, records: list[ImportRecord]) -> ImportSummary:
        """Store a batch: skip what exists, reuse vectors of the database's model, embed the rest, COPY."""
        return self._write(*self._prepare(records))

    def import_stream(
        self, items: Iterable[T], records: Callable[[T], list[ImportRecord]]
    ) -> Iterator[tuple[T, ImportSummary]]:
        """Import batch after batch, writing one batch while the next is prepared; yields (item, summary).

        The COPY and commit of batch n run in a writer thread (psycopg2 releases the GIL while the server
        works) while this thread checks, embeds and builds batch n + 1. A duplicate across two batches in
        flight is caught by the unique constraint and skipped (BulkRepository.copy_add).
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="memagent-copy") as writer:
            in_flight: tuple[T, Future[ImportSummary]] | None = None
            for item in items:
                prepared = self._prepare(records(item))
                if in_flight is not None:
                    yield in_flight[0], in_flight[1].result()
                in_flight = item, writer.submit(self._write, *prepared)
            if in_flight is not None:
                yield in_flight[0], in_flight[1].result()

    def _prepare(self, records: list[ImportRecord]) -> tuple[ImportSummary, EncodedBatch]:
        summary = ImportSummary()
        embedder = self.memory.embedder
        with self.memory.unit("*") as repo:  # a file may hold many namespaces
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
        return summary, encode(memories)

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
