"""One error hierarchy: every failure a user can cause or meet is a MemagentError."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class MemagentError(Exception):
    """Base of every error memagent reports; `str()` is the one-line message shown to the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} {self.hint}"


class ConfigError(MemagentError):
    """A setting is missing, malformed or contradicts another."""

    exit_code = 2


class InputError(MemagentError):
    """The user's input (text, option, date, metadata) cannot be accepted."""

    exit_code = 2


class DatabaseError(MemagentError):
    """The database cannot be reached or answered with an error."""

    exit_code = 3


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached: refused or unreachable, the connection lost, the embedded server down.

    What a memory waiting in the recovery file is waiting for; any other DatabaseError is an answer.
    """


class EmbeddedServerError(DatabaseUnavailableError):
    """The embedded PostgreSQL server could not be initialised or started."""


class SchemaError(DatabaseError):
    """The database schema is not at the revision this memagent needs."""


class EmbeddingMismatchError(MemagentError):
    """The configured embedding model differs from the one the database holds."""

    exit_code = 4


class ProviderError(MemagentError):
    """A model provider (embeddings or chat) failed or refused the request."""

    exit_code = 5


class ModelOutputError(ProviderError):
    """The chat model's reply was not what was asked for (not JSON, or not the schema), even when asked
    again: nothing it said was applied."""


def first_line(error: Any, empty: str | None = None) -> str:
    """The first non-empty line of an error's message (drivers add detail lines); `empty` (default: the
    error's type name) when it has none."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else (empty if empty is not None else type(error).__name__)


class KeptError(DatabaseUnavailableError):
    """The database could not be reached (`reason`), so the memory waits in the recovery file (`kept`)."""

    def __init__(self, reason: str, *, kept: Path) -> None:
        super().__init__(
            f"{reason.rstrip('.')}; the memory is kept in {kept} and will be stored by the next run that "
            "reaches the database."
        )
        self.reason = reason
        self.kept = kept
