"""What `memagent config` shows: every setting's effective value, secrets masked, and its source."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from memagent.config import Settings, env_names
from memagent.errors import MemagentError
from memagent.redact import masked_url, redact

# (setting, value as JSON would hold it, where it came from)
Row = tuple[str, Any, str]


def _source(settings: Settings, name: str) -> str:
    for env in env_names(name):
        if env in os.environ:
            return env
    return ".env" if name in settings.model_fields_set else "default"


def _value(name: str, value: Any) -> Any:
    if name == "database_url" and isinstance(value, SecretStr):
        from memagent.store.database import normalise_url

        return masked_url(normalise_url(value.get_secret_value()))
    if isinstance(value, SecretStr):
        return "**** (set)"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return redact(value)  # base URLs may carry credentials
    return value


def settings_rows(settings: Settings) -> list[Row]:
    """Each setting with its value and source, then the resolved home, embedding model and database."""
    from memagent.store.database import Database

    rows: list[Row] = [
        (name, _value(name, getattr(settings, name)), _source(settings, name))
        for name in Settings.model_fields
    ]
    rows.append(("home (resolved)", str(settings.home_path()), "derived"))
    try:
        spec = settings.embedding_spec()
        rows.append(
            ("embedding (resolved)", f"{spec.provider}: {spec.model}, {spec.dim} dimensions", "derived")
        )
    except MemagentError as exc:
        rows.append(("embedding (resolved)", f"invalid: {exc}", "derived"))
    rows.append(("database (resolved)", Database(settings).describe(), "derived"))
    if settings.database_url is None:
        from memagent.store.embedded_paths import shared_buffers_mb

        cache = settings.shared_buffers_mb or shared_buffers_mb()
        rows.append(("buffer cache (resolved)", f"{cache} MB when the embedded server starts", "derived"))
    server = os.environ.get("MEMAGENT_SERVED_BY")
    rows.append(
        (
            "command server",
            f"this command ran in it (pid {server})" if server else "not used for this command",
            "derived",
        )
    )
    return rows


def shown(value: Any) -> str:
    """A value as the table shows it."""
    return "-" if value is None else str(value)


def database_rows(settings: Settings) -> list[Row]:
    """The database's server, pgvector, schema, embedding space and isolation, or why it cannot be reached."""
    from memagent.bootstrap import App
    from memagent.usecases.status import database_status

    try:
        with App(settings, catch_up=False, notes=False) as app:
            service = app.service()
            status = database_status(service)
    except MemagentError as exc:
        return [("database status", f"unavailable: {exc}", "database")]
    space = status.embedding_space
    embedder = service.embedder
    return [
        (
            "embedding (in use)",
            f"{embedder.provider}: {embedder.model}, {embedder.dim} dimensions",
            "database",
        ),
        ("postgresql", status.server.postgresql, "database"),
        ("pgvector", status.server.pgvector, "database"),
        ("schema revision", status.server.revision, "database"),
        ("embeddings stored", f"{space[0]}, {space[1]} dimensions" if space else None, "database"),
        ("vector index kind", status.index_kind, "database"),
        ("namespace isolation", status.isolation.describe(), "database"),
    ]
