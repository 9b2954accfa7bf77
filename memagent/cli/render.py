"""Rendering for the CLI: Rich tables to stdout, messages to stderr, JSON for --json."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from memagent.records import MemoryRecord, RecalledMemory
from memagent.redact import redact


def out() -> Console:
    """Console for data (stdout); piped or redirected, tables are 120 columns wide unless COLUMNS says."""
    console = Console(file=sys.stdout, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120
    return console


def err() -> Console:
    """Console for messages and progress (stderr)."""
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def message(text: str) -> None:
    """A plain status line on stderr (secrets masked: messages may quote provider errors and URLs)."""
    err().print(redact(text), markup=False)


def error_line(text: str) -> None:
    """The one red line an error gets (secrets masked)."""
    err().print(f"Error: {redact(text)}", style="bold red", markup=False)


def print_json(data: Any) -> None:
    """JSON to stdout, one document."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def count_progress(label: str) -> Progress:
    """A transient progress bar on stderr for work counted in memories (backfill, reembed)."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err(),
        transient=True,
    )


# Control characters (C0 but newline and tab, DEL, C1) and the bidirectional overrides a memory's text may
# hold (an import, a model's reply): shown as escapes, so none can move the cursor, recolour the terminal or
# reorder what is shown. --json output keeps the text exact.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """The text with every control character written as an escape (\\x1b, \\u202e)."""
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


def cell(text: str) -> Text:
    """Text for a table (its title or a cell), shown as it is: its control characters as escapes (visible)
    and brackets as brackets (a str would be read as Rich markup, `[/x]` an error, `[link=...]` hidden)."""
    return Text(visible(text))


def when(value: datetime) -> str:
    """A date as the tables show it (local time, to the minute)."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


RANKED_BY = {
    "hybrid": "fused rank score (full-text and vector)",
    "vector": "cosine similarity",
    "text": "BM25 full-text score",
}


def recall_table(query: str, memories: Sequence[RecalledMemory], mode: str) -> None:
    """The recalled memories, best first: the score that ranks them, their cosine similarity, and their kind
    when not all are exchanges."""
    title = cell(f"Recalled for: {query}  (ranked by {RANKED_BY.get(mode, mode)})")
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right")
    table.add_column("similarity", justify="right")
    table.add_column("session")
    kinds = _shows_kind(memories)
    if kinds:
        table.add_column("kind", no_wrap=True)
    table.add_column("date", no_wrap=True)
    table.add_column("memory", overflow="fold")
    for rank, memory in enumerate(memories, start=1):
        table.add_row(
            str(rank),
            f"{memory.score:.3f}",
            similarity(memory),
            cell(memory.session_id),
            *([memory.kind] if kinds else []),
            when(memory.created_at),
            cell(memory.content),
        )
    out().print(table)


def _shows_kind(memories: Sequence[MemoryRecord]) -> bool:
    # A kind column only when something is not an exchange: a namespace of exchanges alone (every one
    # before facts and summaries) keeps its table as it was, and the memory column its width.
    return any(memory.kind != "exchange" for memory in memories)


def similarity(memory: RecalledMemory) -> str:
    """The similarity as shown: three decimals, or a dash when there is no vector to compare."""
    return "-" if memory.similarity is None else f"{memory.similarity:.3f}"


def memory_table(title: str, memories: Sequence[MemoryRecord]) -> None:
    """Stored memories, newest first (with their kind when not all are exchanges)."""
    table = Table(title=cell(title), title_justify="left", expand=False)
    table.add_column("id", justify="right", style="dim")
    table.add_column("session")
    kinds = _shows_kind(memories)
    if kinds:
        table.add_column("kind", no_wrap=True)
    table.add_column("date", no_wrap=True)
    table.add_column("memory", overflow="fold")
    for memory in memories:
        table.add_row(
            str(memory.id),
            cell(memory.session_id),
            *([memory.kind] if kinds else []),
            when(memory.created_at),
            cell(memory.content),
        )
    out().print(table)


def settings_table(rows: Sequence[tuple[str, str, str]]) -> None:
    """Effective settings: name, value, where it came from."""
    table = Table(title="memagent settings", title_justify="left")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    table.add_column("source", style="dim")
    for name, value, source in rows:
        table.add_row(cell(name), cell(value), cell(source))
    out().print(table)
