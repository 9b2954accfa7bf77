"""Reading an import file: JSON lines parsed, validated and encoded for COPY in batches, ahead of the loader.

The file is first cut into batches of lines (one read in 1 MB blocks, which also counts them). A parser
thread then reads each batch by its byte range, parses it, and encodes the rows whose vectors can be
reused straight into PostgreSQL's binary COPY format, while the loader checks and loads the batch before.
The per-line work is kept small (about 35 µs at 1536 dimensions here: JSON, base64, one conversion of the
vector to big-endian floats), because on a two-core machine it shares the CPU with the server's COPY. A
second process was measured too and was slower: moving 30 MB batches between processes cost more than it
saved (docs/benchmarks.md).
"""

from __future__ import annotations

import binascii
import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pybase64

from memagent.bulk import encode_row
from memagent.errors import InputError, MemagentError
from memagent.repository import NewMemory, content_hash
from memagent.service import clean_metadata, clean_name, clean_text

# Batches parsed ahead of the loader (each about 30 MB at 5,000 lines of 1536 dimensions).
READ_AHEAD = 2


@dataclass(frozen=True)
class ParseOptions:
    """How lines become memories: namespace and session defaults, and which vectors can be reused."""

    namespace: str | None  # put every memory here (--namespace)
    default_namespace: str  # for lines that name none
    session: str  # for lines that name none
    model: str  # the database's embedding model: a line's vector is reused when it has this model...
    dim: int  # ...and this many dimensions


@dataclass(frozen=True)
class ImportRecord:
    """One valid line of an import file."""

    line: int
    namespace: str
    session_id: str
    content: str
    digest: str  # content_hash(content)
    metadata: dict[str, Any]
    created_at: datetime | None
    row: bytes | None  # the COPY row, when the line's vector is reused; None when it must be embedded


@dataclass
class ParsedBatch:
    """A range of lines of an import file, parsed.

    Lines whose vectors are reused arrive encoded for COPY, back to back in `rows` (one bytes object: it
    crosses from the parser process in one piece, and a batch of new memories is loaded as it is); the
    lines to embed arrive as records. Identical content in a namespace is kept once per batch.
    """

    rows: bytes = b""
    ends: list[int] = field(default_factory=list)  # where each row of `rows` ends
    keys: list[tuple[str, str]] = field(default_factory=list)  # (namespace, content hash) of each row
    to_embed: list[ImportRecord] = field(default_factory=list)
    duplicates: int = 0  # lines whose content appeared earlier in the batch
    failed: list[tuple[int, str]] = field(default_factory=list)
    bytes_read: int = 0

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


@dataclass(frozen=True)
class Chunk:
    """Lines [first_line, first_line + lines) of a file, at bytes [start, end)."""

    start: int
    end: int
    first_line: int
    lines: int


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
    if not np.isfinite(embedding).all() or not np.any(embedding):
        raise InputError("embedding has non-finite values or is all zeros")
    return embedding


def parse_line(raw: bytes, line: int, options: ParseOptions, now: datetime) -> ImportRecord:
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
    namespace = clean_name(
        options.namespace or str(data.get("namespace") or options.default_namespace), "namespace"
    )
    session = clean_name(str(data.get("session_id") or options.session), "session")
    created_at = None
    if data.get("created_at") is not None:
        try:
            created_at = datetime.fromisoformat(str(data["created_at"]))
        except ValueError:
            raise InputError(f"created_at {str(data['created_at'])[:40]!r} is not an ISO 8601 date") from None
        if created_at.tzinfo is None:
            created_at = created_at.astimezone()
    metadata = clean_metadata(data.get("metadata"))
    digest = content_hash(content)
    row = None
    if data.get("embedding") is not None:
        embedding = parse_embedding(data["embedding"])  # validated even when it will be re-embedded
        if data.get("embedding_model") == options.model and embedding.shape == (options.dim,):
            memory = NewMemory(namespace, session, content, embedding, options.model, metadata, created_at)
            row = encode_row(memory, digest, now)
    return ImportRecord(line, namespace, session, content, digest, metadata, created_at, row)


def parse_chunk(path: Path, chunk: Chunk, options: ParseOptions) -> ParsedBatch:
    """Parse one range of lines of the file."""
    with open(path, "rb") as source:
        source.seek(chunk.start)
        data = source.read(chunk.end - chunk.start)
    batch = ParsedBatch(bytes_read=len(data))
    now = datetime.now(UTC)
    rows: list[bytes] = []
    seen: set[tuple[str, str]] = set()
    size = 0
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the piece after the last newline
    for number, raw in enumerate(lines, start=chunk.first_line):
        if not raw.strip():
            continue
        try:
            record = parse_line(raw, number, options, now)
        except MemagentError as exc:
            batch.failed.append((number, exc.message.rstrip(".")))
            continue
        key = (record.namespace, record.digest)
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


def plan_chunks(path: Path, lines_per_chunk: int, *, block_size: int = 1 << 20) -> list[Chunk]:
    """Cut a file into ranges of `lines_per_chunk` lines (one read of the file, block by block)."""
    chunks: list[Chunk] = []
    start = position = 0
    first_line = 1
    lines = 0
    ends_with_newline = True
    with open(path, "rb") as source:
        while block := source.read(block_size):
            ends_with_newline = block.endswith(b"\n")
            offset = 0
            while (count := block.count(b"\n", offset)) >= lines_per_chunk - lines:
                for _ in range(lines_per_chunk - lines):
                    offset = block.index(b"\n", offset) + 1
                chunks.append(Chunk(start, position + offset, first_line, lines_per_chunk))
                start, first_line, lines = position + offset, first_line + lines_per_chunk, 0
            lines += count
            position += len(block)
    if position > start:
        chunks.append(Chunk(start, position, first_line, lines + (not ends_with_newline)))
    return chunks


def parse_file(path: Path, chunks: list[Chunk], options: ParseOptions) -> Iterator[ParsedBatch]:
    """The chunks parsed, in order, by a thread that works up to READ_AHEAD batches ahead of the caller.

    psycopg2 releases the interpreter lock while COPY data goes to the server, so parsing overlaps the
    load of the batch before. The thread stops with the iteration, also when the caller stops early.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="memagent-parse") as parser:
        ahead: deque[Future[ParsedBatch]] = deque()
        try:
            for chunk in chunks:
                ahead.append(parser.submit(parse_chunk, path, chunk, options))
                if len(ahead) > READ_AHEAD:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()
