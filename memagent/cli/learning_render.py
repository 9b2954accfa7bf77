"""Rendering what learning did and what it learnt: report lines, the facts table, a memory's history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from memagent import wording
from memagent.cli import render

if TYPE_CHECKING:
    from memagent.records import History, LearnReport, MemoryRecord


def learned_line(report: LearnReport) -> str | None:
    """One line for what learning did (None when it had nothing to do)."""
    parts = []
    if report.added:
        parts.append(f"{wording.count(len(report.added), 'fact')} added")
    for count, what in ((report.updated, "updated"), (report.invalidated, "invalidated")):
        if count:
            parts.append(f"{count} {what}")
    if report.unchanged:
        parts.append(f"{report.unchanged} already known")
    if report.refused:
        parts.append(f"{report.refused} refused (named a fact it was not shown)")
    if not parts and not report.exchanges:
        return None
    learnt = ", ".join(parts) if parts else "no facts worth keeping"
    return f"Learnt from {wording.count(report.exchanges, 'exchange')}: {learnt}."


def failed_line(report: LearnReport) -> str | None:
    """One line for the exchanges left waiting, and why (None when none failed)."""
    if not report.failed:
        return None
    reason = report.failed[-1][1].rstrip(".")
    left = wording.count(len(report.failed), "exchange")
    return f"Facts not learnt from {left} ({reason}); `memagent extract` tries again."


def facts_table(title: str, facts: Sequence[MemoryRecord]) -> None:
    """Facts, newest first: id, since when, importance, text."""
    table = Table(title=render.cell(title), title_justify="left", expand=False)
    table.add_column("id", justify="right", style="dim")
    table.add_column("since", no_wrap=True)
    table.add_column("importance", justify="right")
    table.add_column("fact", overflow="fold")
    for fact in facts:
        table.add_row(
            str(fact.id), render.when(fact.created_at), f"{fact.importance:.2f}", render.cell(fact.content)
        )
    render.out().print(table)


def history_view(history: History) -> None:
    """A memory's chain, oldest first, with when each held and was believed; then the events."""
    console = render.out()
    for entry in history.entries:
        memory = entry.memory
        state = "current"
        if entry.expired_at is not None:
            replaced = f" by {entry.superseded_by}" if entry.superseded_by is not None else ""
            state = f"replaced{replaced} on {render.when(entry.expired_at)}"
        elif entry.archived_at is not None:
            state = f"archived on {render.when(entry.archived_at)}"
        console.print(f"{memory.id}  {memory.kind}  [{state}]", markup=False, highlight=False)
        console.print(f"    {render.visible(memory.content)}", markup=False, highlight=False)
        held = f"held from {render.when(memory.created_at)}"
        if entry.invalid_at is not None:
            held += f" until {render.when(entry.invalid_at)}"
        sources = f"; from {', '.join(map(str, entry.sources))}" if entry.sources else ""
        console.print(
            f"    {held}; learnt {render.when(entry.learned_at)}{sources}", markup=False, highlight=False
        )
    if history.events:
        console.print("events:", markup=False, highlight=False)
    for event in history.events:
        related = f" -> {event.related_id}" if event.related_id is not None else ""
        reason = f": {render.visible(event.reason)}" if event.reason else ""
        error = event.details.get("error")
        if error:
            reason += f" (failed: {render.visible(str(error))})"
        console.print(
            f"  {render.when(event.created_at)}  {event.action} {event.memory_id}{related}{reason}",
            markup=False,
            highlight=False,
        )
