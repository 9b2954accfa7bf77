"""Checks on what callers hand memagent (texts, names, metadata), shared by every entry point."""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    try:
        return validate_name(value, what)
    except ValueError as exc:
        raise InputError(f"invalid {what}: {exc}.") from None


def clean_text(text: str, what: str = "text") -> str:
    """Validate a text to embed and store: not empty, no NUL bytes (PostgreSQL text cannot hold them)."""
    if not isinstance(text, str):
        raise InputError(f"the {what} must be a string, not {type(text).__name__}.")
    stripped = text.strip()
    if not stripped:
        raise InputError(f"the {what} is empty.")
    if "\x00" in stripped:
        raise InputError(f"the {what} contains NUL bytes, which PostgreSQL cannot store.")
    return stripped


def clean_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metadata must be a JSON object."""
    if not metadata and (metadata is None or isinstance(metadata, Mapping)):
        return {}
    if not isinstance(metadata, Mapping):
        raise InputError("metadata must be a JSON object.")
    try:
        text = json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata is not JSON-serialisable: {exc}.") from None
    if "\\u0000" in text:
        raise InputError("metadata contains NUL characters, which PostgreSQL cannot store.")
    return dict(json.loads(text))
