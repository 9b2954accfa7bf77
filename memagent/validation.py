"""Checks on what callers hand memagent (texts, names, metadata), shared by every entry point."""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from memagent.errors import InputError

# The namespace value that opens every namespace to one unit of work (export of all, import, backfill,
# re-embedding) under row-level security (revision 0006); it can never name a namespace.
ALL_NAMESPACES = "*"


def validate_name(value: str, what: str) -> str:
    """Check a namespace or session id: 1-200 printable characters (raises ValueError)."""
    if not value or not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > 200:
        raise ValueError(f"{what} must be at most 200 characters")
    if not value.isprintable():
        raise ValueError(f"{what} must not contain control characters")
    if value == ALL_NAMESPACES:
        raise ValueError(f"{what} {ALL_NAMESPACES!r} is reserved")
    return value


def clean_name(value: str, what: str) -> str:
    """Validate a namespace or session id, as an InputError."""
    if not isinstance(value, str):
        raise InputError(f"invalid {what}: it must be a string, not {type(value).__name__}.")
    try:
        return validate_name(value, what)
    except ValueError as exc:
        raise InputError(f"invalid {what}: {exc}.") from None


# The dates memagent accepts (as UTC): every one of them can be shown in any time zone (±14 h) by Python,
# whose dates run from year 1 to 9999. PostgreSQL would take far wider ones that no reader could display.
MIN_DATE = datetime(1, 1, 2, tzinfo=UTC)
MAX_DATE = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
# How deep metadata may nest (JSON objects and lists); deeper is refused rather than overflowing a stack.
MAX_METADATA_DEPTH = 64
# A vector shorter than this cannot be normalised in float32 (its squares underflow): cosine distances to it
# come out 0 or 2, topping recalls. Real embeddings have lengths near 1.
MIN_VECTOR_NORM = 1e-6
# A vector longer than this overflows float32 when pgvector sums its squares (the norm of 384 values of 3e38
# is 5.9e39): every cosine distance to it is then 1, whatever its direction. Real embeddings are near 1.
MAX_VECTOR_NORM = 1e18


def vector_length_problem(norm: float) -> str | None:
    """Why a vector of this length (L2 norm) cannot be compared by cosine distance, or None."""
    if norm < MIN_VECTOR_NORM:
        return "a (nearly) zero vector: it has no direction to compare"
    if norm > MAX_VECTOR_NORM:
        return "a vector too long to compare (its length overflows float32)"
    return None


def clean_date(value: datetime, what: str = "date") -> datetime:
    """A date with a time zone within MIN_DATE and MAX_DATE (a naive date means the caller's local time)."""
    if not isinstance(value, datetime):
        raise InputError(f"the {what} must be a datetime, not {type(value).__name__}.")
    try:
        aware = value if value.tzinfo is not None else value.astimezone()
        utc = aware.astimezone(UTC)
    except (OverflowError, ValueError, OSError):
        utc = None
    if utc is None or not MIN_DATE <= utc <= MAX_DATE:
        raise InputError(
            f"the {what} {value.isoformat()} is out of range: memagent takes dates from "
            f"{MIN_DATE.date().isoformat()} to {MAX_DATE.date().isoformat()} (UTC)."
        )
    return aware


_DURATION = re.compile(r"\s*(\d{1,6})\s*([mhdw])\s*")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def clean_duration(value: timedelta | str, what: str = "duration") -> timedelta:
    """A positive duration: a timedelta, or a number and a unit (90m, 12h, 30d, 2w)."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise InputError(f"{what} {value!r} is not a duration; use a number and m, h, d or w (e.g. 30d).")
        value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if not isinstance(value, timedelta):
        raise InputError(f"{what} must be a timedelta or a string like 30d, not {type(value).__name__}.")
    if value <= timedelta(0):
        raise InputError(f"{what} must be longer than zero.")
    return value


def clean_text(text: str, what: str = "text") -> str:
    """Validate a text to embed and store: not empty, no NUL bytes (PostgreSQL text cannot hold them)."""
    if not isinstance(text, str):
        raise InputError(f"the {what} must be a string, not {type(text).__name__}.")
    stripped = text.strip()
    if not stripped:
        raise InputError(f"the {what} is empty.")
    if "\x00" in stripped:
        raise InputError(f"the {what} contains NUL bytes, which PostgreSQL cannot store.")
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: bytes that were not UTF-8 (argv, a file)
        raise InputError(f"the {what} is not valid UTF-8 (at character {exc.start}).") from None
    return stripped


def clean_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metadata must be a JSON object."""
    if not metadata and (metadata is None or isinstance(metadata, Mapping)):
        return {}
    if not isinstance(metadata, Mapping):
        raise InputError("metadata must be a JSON object.")
    if _depth(metadata) > MAX_METADATA_DEPTH:
        raise InputError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels.")
    try:
        text = json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata is not JSON-serialisable: {exc}.") from None
    if "\\u0000" in text:
        raise InputError("metadata contains NUL characters, which PostgreSQL cannot store.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("metadata is not valid UTF-8.") from None
    return dict(json.loads(text))


def _depth(value: Any) -> int:
    """How deeply JSON-like values nest, counted without recursion (no stack to overflow)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_METADATA_DEPTH:
            return level
        stack.extend((child, level + 1) for child in children)
    return deepest


def existing_file(path: Path) -> None:
    """Refuse a path that is not a file to read, saying which way."""
    if not path.is_file():
        raise InputError(f"{path} is a folder, not a file." if path.is_dir() else f"no such file: {path}")


def whole(value: Any, what: str) -> int:
    """A count given through the API: a whole number (True, 2.5 or "3" refused in one line)."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be a whole number, not {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise InputError(f"{what} must be a whole number, not {value!r}.") from None
