"""Counts in messages: "1 memory", "2 memories"."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`n` with the noun in the right number ("1 memory", "3 memories", "0 lines")."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def memories(n: int) -> str:
    """`n memory` or `n memories`."""
    return count(n, "memory", "memories")
