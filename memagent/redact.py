"""Keep secrets out of anything printed: API keys and database passwords become ***.

Secrets are masked where they stand — the password in a URL's user info or in a `password=` parameter, a
key after `api_key=`, `Bearer` or `Authorization:`, and the API keys memagent was configured with wherever
they appear — never by replacing every occurrence of a password's text (a password like "memagent" would
otherwise blank out the word everywhere).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

_KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "MEMAGENT_OPENAI_API_KEY",
    "MEMAGENT_EMBEDDING_API_KEY",
    "MEMAGENT_CHAT_API_KEY",
)
# Shorter values could be ordinary words; every real API key is longer.
MIN_KEY_LENGTH = 8
# Words that stand for a secret in examples and hints; never masked.
_PLACEHOLDERS = {"password", "pass", "secret", "***", "****"}

_PATTERNS = (
    # scheme://user:PASSWORD@host — up to the last @ before the host (a password may hold an @)
    re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^\s/]+)(?=@[^@\s/]*)", re.I),
    # password='…' and "…" (spaces inside), then password=…, ?password=…&, PGPASSWORD=…, api_key=…
    re.compile(
        r"(?P<head>\b(?:pg)?(?:password|passwd|pwd|sslpassword|api[_-]?key|access[_-]?token|secret[_-]?key)"
        r"['\"]?\s*[=:]\s*)(?P<secret>'[^']*'|\"[^\"]*\")",
        re.I,
    ),
    re.compile(
        r"(?P<head>\b(?:pg)?(?:password|passwd|pwd|sslpassword|api[_-]?key|access[_-]?token|secret[_-]?key)"
        r"['\"]?\s*[=:]\s*)(?P<secret>[^\s'\"&;,)*][^\s'\"&;,)]*)",
        re.I,
    ),
    # Authorization: Bearer …, Basic …
    re.compile(r"(?P<head>\b(?:Bearer|Basic)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})"),
)

_registered: set[str] = set()


def register(values: Iterable[str | None]) -> None:
    """Add API keys this process was configured with (from .env or keyword arguments) to the masked set."""
    _registered.update(value for value in values if value and len(value) >= MIN_KEY_LENGTH)


def secrets() -> list[str]:
    """The API keys to mask wherever they appear: from the environment and from register()."""
    found = {os.environ[name] for name in _KEY_VARIABLES if os.environ.get(name)}
    return sorted((found | _registered) - {""}, key=len, reverse=True)


def _mask(match: re.Match[str]) -> str:
    secret = match.group("secret")
    return match.group(0) if secret.lower() in _PLACEHOLDERS else f"{match.group('head')}***"


def redact(text: str) -> str:
    """The text with every secret masked where it stands (see the module's docstring)."""
    for value in secrets():
        if len(value) >= MIN_KEY_LENGTH:
            text = text.replace(value, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def masked_url(url: str) -> str:
    """A database URL with its password (in the user info or a query parameter) hidden, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return redact(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return "<unparseable URL>"
