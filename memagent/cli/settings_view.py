"""The rows `memagent config` shows: every setting's effective value, secrets masked, and its source."""

from __future__ import annotations

import os

from pydantic import SecretStr

from memagent.config import Settings, env_names
from memagent.errors import MemagentError
from memagent.redact import masked_url


def _source(settings: Settings, name: str) -> str:
    for env in env_names(name):
        if env in os.environ:
            return env
    return ".env" if name in settings.model_fields_set else "default"


def settings_rows(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, shown value, source) for each setting, plus the resolved embedding model and database."""
    from memagent.store.database import Database, normalise_url

    rows: list[tuple[str, str, str]] = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name == "database_url" and value is not None:
            shown = masked_url(normalise_url(value.get_secret_value()))
        elif isinstance(value, SecretStr):
            shown = "**** (set)"
        elif value is None:
            shown = "-"
        else:
            shown = str(value)
        rows.append((name, shown, _source(settings, name)))
    rows.append(("home (resolved)", str(settings.home_path()), "derived"))
    try:
        spec = settings.embedding_spec()
        rows.append(
            ("embedding (resolved)", f"{spec.provider}: {spec.model}, {spec.dim} dimensions", "derived")
        )
    except MemagentError as exc:
        rows.append(("embedding (resolved)", f"invalid: {exc}", "derived"))
    rows.append(("database (resolved)", Database(settings).describe(), "derived"))
    return rows
