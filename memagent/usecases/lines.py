"""Reading a JSON-lines file fast: whole lines in batches, as views into large blocks read once."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def line_batches(
    source: BinaryIO, lines_per_batch: int, *, block_size: int = 1 << 22
) -> Iterator[tuple[int, list[bytes | memoryview]]]:
    """(number of the first line, the lines without their newlines), `lines_per_batch` lines at a time.

    Lines are views into the blocks read (no copy), except a line that spans two blocks. A UTF-8 byte
    order mark at the start of the file (some Windows editors write one) is skipped.
    """
    first_line = 1
    lines: list[bytes | memoryview] = []
    carry: list[bytes] = []  # the start of a line that continues in the next block
    head = source.read(len(codecs.BOM_UTF8))
    head = b"" if head == codecs.BOM_UTF8 else head
    while block := head + source.read(block_size):
        head = b""
        view = memoryview(block)
        start = 0
        while (end := block.find(b"\n", start)) >= 0:
            if carry:
                lines.append(b"".join([*carry, block[start:end]]))
                carry = []
            else:
                lines.append(view[start:end])
            start = end + 1
            if len(lines) == lines_per_batch:
                yield first_line, lines
                first_line += len(lines)
                lines = []
        if start < len(block):
            carry.append(block[start:])
    if carry:
        lines.append(b"".join(carry))  # a last line without a newline
    if lines:
        yield first_line, lines


def count_lines(path: Path, *, stop_at: int | None = None) -> int:
    """How many lines a file has, or stop_at once it has that many (read in 1 MB blocks)."""
    count = 0
    last = b"\n"
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
            if stop_at is not None and count >= stop_at:
                return stop_at
    return count + (last != b"\n")
