"""Keep secrets out of anything printed: API keys and database passwords become ***."""

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
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?P<at>@)", re.I)


def secrets() -> list[str]:
    """The secret values in this process's environment (keys, the database URL's password)."""
    found = [os.environ[name] for name in _KEY_VARIABLES if os.environ.get(name)]
    password = url_password(os.environ.get("MEMAGENT_DATABASE_URL", ""))
    if password:
        found.append(password)
    return [value for value in found if len(value) >= 4]


def url_password(url: str) -> str | None:
    """The password inside a URL's user info, if it has one."""
    match = _URL_PASSWORD.search(url)
    return match.group("password") if match else None


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """The text with every known secret (and `extra` ones), and any password inside a URL, replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}***{m.group('at')}", text)
    for value in [*secrets(), *(value for value in extra if value)]:
        text = text.replace(value, "***")
    return text


def masked_url(url: str) -> str:
    """A database URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
