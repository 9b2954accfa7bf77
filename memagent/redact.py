"""Keep secrets out of anything printed: API keys and database passwords become ***."""

from __future__ import annotations

import os
import re

_KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "MEMAGENT_OPENAI_API_KEY",
    "MEMAGENT_EMBEDDING_API_KEY",
    "MEMAGENT_CHAT_API_KEY",
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?P<at>@)", re.I)


def secrets() -> list[str]:
    """The secret values in this process's environment (keys, the database URL's password)."""
    found = [os.environ[name] for name in _KEY_VARIABLES if os.environ.get(name)]
    url = os.environ.get("MEMAGENT_DATABASE_URL", "")
    match = _URL_PASSWORD.search(url)
    if match:
        found.append(match.group("password"))
    return [value for value in found if len(value) >= 4]


def redact(text: str) -> str:
    """The text with every known secret, and any password inside a URL, replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}***{m.group('at')}", text)
    for value in secrets():
        text = text.replace(value, "***")
    return text
