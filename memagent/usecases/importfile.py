"""Reading an import file: JSON lines parsed, validated and encoded for COPY in batches, ahead of the loader.

A reader thread reads the file once, front to back in large blocks, and turns each batch of lines into
rows already in PostgreSQL's binary COPY format (for lines whose vectors can be reused), while the loader
checks and loads the batch before. The per-line work is kept small (about 35 µs at 1536 dimensions here:
JSON, base64, one conversion of the vector to big-endian floats), because on a two-core machine it shares
the CPU with the server's COPY. A second process was measured too and was slower: moving 30 MB batches
between processes cost more than it saved (docs/benchmarks.md).
"""

from __future__ import annotations

import binascii
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from queue import Full, Queue
from typing import Any

import numpy as np
import orjson
import pybase64

from memagent.errors import InputError, MemagentError
from memagent.store.bulk import encode_row
from memagent.store.memories import NewMemory, content_hash
from memagent.usecases.lines import line_batches
from memagent.usecases.references import PLAIN, Learned, References, parse_learned
from memagent.validation import clean_date, clean_metadata, clean_name, clean_text, vector_length_problem

# Batches parsed ahead of the loader (each about 30 MB at 5,000 lines of 1536 dimensions).
READ_AHEAD = 2


@dataclass(frozen=True)
class ParseOptions:
    """How lines become memories: namespace and session defaults, and which vectors can be reused."""

    namespace: str | None  # put every memory here (--namespace)
    default_namespace: str  # for lines that name none
    session_id: str  # for lines that name none
    model: str  # the database's embedding model: a line's vector is reused when it has this model...
    dim: int  # ...and this many dimensions


@dataclass
class ImportRecord:
    """One valid line of an import file."""

    line: int
    namespace: str
    session_id: str
    content: str
    digest: str  # content_hash(content)
    metadata: dict[str, Any]
    created_at: datetime | None
    row: bytes | None = None  # the COPY row, when the line's vector is reused; None while it must be embedded
    learned: Learned = PLAIN

    def copy_row(self, embedding: Any, model: str, now: datetime) -> bytes:
        """The record with this embedding as a binary COPY row (`now` stands in for a missing created_at)."""
        memory = NewMemory(
            self.namespace,
            self.session_id,
            self.content,
            embedding,
            model,
            self.metadata,
            self.created_at,
            self.learned.kind,
            self.learned.importance,
        )
        return encode_row(memory, self.digest, now, self.learned.life)


@dataclass
class ParsedBatch:
    """A range of lines of an import file, parsed.

    Lines whose vectors are reused arrive encoded for COPY, back to back in `rows` (one bytes object, so a
    batch of new memories is loaded as it is, without a copy per row); the lines to embed arrive as
    records. Identical content in a namespace is kept once per batch. `references`: the file ids and links
    its lines carry, restored once the whole file is stored (memagent.usecases.references).
    """

    rows: bytes = b""
    ends: list[int] = field(default_factory=list)  # where each row of `rows` ends
    keys: list[tuple[str, str]] = field(default_factory=list)  # (namespace, content hash) of each row
    to_embed: list[ImportRecord] = field(default_factory=list)
    duplicates: int = 0  # lines whose content appeared earlier in the batch
    failed: list[tuple[int, str]] = field(default_factory=list)
    bytes_read: int = 0
    lines: int = 0  # lines of the file in this batch (blank and failed ones included)
    references: References = field(default_factory=References)

    def rows_except(self, skip: set[tuple[str, str]]) -> tuple[int, bytes]:
        """The encoded rows whose keys are not in `skip`: how many, and their bytes."""
        if not skip.intersection(self.keys):
            return len(self.keys), self.rows
        view = memoryview(self.rows)
        kept = [
            view[start:end]
            for key, (start, end) in zip(self.keys, pairwise([0, *self.ends]), strict=True)
            if key not in skip
        ]
        return len(kept), b"".join(kept)


def parse_embedding(value: Any) -> np.ndarray:
    """A stored vector from an import line: base64 of little-endian float32, or a list of numbers."""
    if isinstance(value, str):
        try:
            raw = pybase64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("embedding is not valid base64") from None
        if not raw or len(raw) % 4:
            raise InputError("embedding is not a whole number of float32 values")
        embedding = np.frombuffer(raw, dtype="<f4")
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        embedding = np.asarray(value, dtype=np.float32)
    else:
        raise InputError("embedding is neither base64 float32 nor a list of numbers")
    if not np.isfinite(embedding).all():
        raise InputError("embedding has non-finite values")
    problem = vector_length_problem(float(np.linalg.norm(embedding.astype(np.float64))))
    if problem is not None:
        raise InputError(f"embedding is {problem}")
    return embedding


def _loads(raw: bytes | memoryview) -> Any:
    data = orjson.loads(raw)
    # orjson reads an integer beyond 64 bits as a float; the standard library keeps it exact. Only metadata
    # can hold numbers, so a line whose metadata has a float is read again the slow, exact way.
    if isinstance(data, dict) and _has_float(data.get("metadata")):
        data = json.loads(bytes(raw).decode("utf-8"))
    return data


def _has_float(value: Any) -> bool:
    stack = [value]  # without recursion: metadata may nest deeper than the stack (clean_metadata says so)
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_line(raw: bytes | memoryview, line: int, options: ParseOptions, now: datetime) -> ImportRecord:
    """Parse and validate one line; raises InputError naming what is wrong."""
    try:
        data = _loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("not valid UTF-8") from None
        raise InputError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise InputError("not a JSON object")
    if "content" not in data:
        raise InputError("content is missing")
    content = clean_text(data["content"], "content")
    named, session = data.get("namespace"), data.get("session_id")  # ("" is refused, not the default)
    namespace = clean_name(
        options.namespace or (options.default_namespace if named is None else str(named)), "namespace"
    )
    session_id = clean_name(options.session_id if session is None else str(session), "session")
    created_at = None
    if data.get("created_at") is not None:
        try:
            created_at = datetime.fromisoformat(str(data["created_at"]))
        except ValueError:
            raise InputError(f"created_at {str(data['created_at'])[:40]!r} is not an ISO 8601 date") from None
        created_at = clean_date(created_at, "created_at")  # a naive date means this machine's local time
    metadata = clean_metadata(data.get("metadata"))
    record = ImportRecord(line, namespace, session_id, content, content_hash(content), metadata, created_at)
    record.learned = parse_learned(data)
    if data.get("embedding") is not None:
        embedding = parse_embedding(data["embedding"])  # validated even when it will be re-embedded
        if data.get("embedding_model") == options.model and embedding.shape == (options.dim,):
            record.row = record.copy_row(embedding, options.model, now)
    return record


def parse_lines(lines: list[bytes | memoryview], first_line: int, options: ParseOptions) -> ParsedBatch:
    """Parse a batch of lines numbered from first_line (blank lines are skipped, bad ones reported)."""
    batch = ParsedBatch(bytes_read=sum(len(raw) + 1 for raw in lines), lines=len(lines))
    now = datetime.now(UTC)
    rows: list[bytes] = []
    seen: set[tuple[str, str]] = set()
    size = 0
    for number, raw in enumerate(lines, start=first_line):
        try:
            record = parse_line(raw, number, options, now)
        except MemagentError as exc:
            if bytes(raw).strip():  # blank lines are skipped
                batch.failed.append((number, exc.message.rstrip(".")))
            continue
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # any line's failure is its own
            batch.failed.append((number, f"cannot be read ({type(exc).__name__}: {str(exc)[:80]})"))
            continue
        key = (record.namespace, record.digest)
        if record.learned is not PLAIN:  # a duplicate line's id names the memory its first line stored
            batch.references.add(key, record.learned)
        if key in seen:
            batch.duplicates += 1
        elif record.row is None:
            seen.add(key)
            batch.to_embed.append(record)
        else:
            seen.add(key)
            rows.append(record.row)
            size += len(record.row)
            batch.ends.append(size)
            batch.keys.append(key)
    batch.rows = b"".join(rows)
    return batch


def parse_file(path: Path, lines_per_batch: int, options: ParseOptions) -> Iterator[ParsedBatch]:
    """The file parsed batch by batch, by a thread that works up to READ_AHEAD batches ahead of the caller.

    psycopg2 releases the interpreter lock while COPY data goes to the server, so parsing overlaps the
    load of the batch before. An error in the thread is raised here; stopping early stops the thread.
    """
    queue: Queue[tuple[str, Any]] = Queue(maxsize=READ_AHEAD)
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
            with open(path, "rb") as source:
                for first_line, lines in line_batches(source, lines_per_batch):
                    if not put(("batch", parse_lines(lines, first_line, options))):
                        return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))
            return
        put(("done", None))

    reader = threading.Thread(target=produce, name="memagent-import-reader", daemon=True)
    reader.start()
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
        reader.join(timeout=5)
