"""Settings: prefix, .env, OpenAI's own variable names, and the resolved embedding model."""

from __future__ import annotations

from pathlib import Path

import pytest

from memagent.config import get_settings
from memagent.errors import ConfigError


def test_defaults_use_the_local_model() -> None:
    spec = get_settings().embedding_spec()
    assert (spec.provider, spec.model, spec.dim) == ("local", "all-MiniLM-L6-v2", 384)


def test_openai_key_selects_openai_with_1536_dimensions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    spec = get_settings().embedding_spec()
    assert (spec.provider, spec.model, spec.dim) == ("openai", "text-embedding-3-small", 1536)
    assert spec.api_key is not None and spec.api_key.get_secret_value() == "sk-from-env"
    assert "sk-from-env" not in repr(get_settings())


def test_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MEMAGENT_NAMESPACE=from-dotenv\nMEMAGENT_TOP_K=7\n")
    settings = get_settings()
    assert (settings.namespace, settings.top_k) == ("from-dotenv", 7)


def test_environment_beats_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("MEMAGENT_NAMESPACE=from-dotenv\n")
    monkeypatch.setenv("MEMAGENT_NAMESPACE", "from-env")
    assert get_settings().namespace == "from-env"


def test_base_url_alone_selects_an_openai_compatible_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1/")
    monkeypatch.setenv("MEMAGENT_EMBEDDING_MODEL", "nomic-embed-text")
    spec = get_settings().embedding_spec()
    assert (spec.provider, spec.base_url, spec.dim) == ("openai", "http://localhost:11434/v1", 768)


def test_unknown_model_needs_a_dimension(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("MEMAGENT_EMBEDDING_MODEL", "my-custom-embedder")
    with pytest.raises(ConfigError, match="MEMAGENT_EMBEDDING_DIM"):
        get_settings().embedding_spec()
    monkeypatch.setenv("MEMAGENT_EMBEDDING_DIM", "512")
    assert get_settings().embedding_spec().dim == 512


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MEMAGENT_TOP_K", "0", "MEMAGENT_TOP_K"),
        ("MEMAGENT_MAX_DISTANCE", "5", "MEMAGENT_MAX_DISTANCE"),
        ("MEMAGENT_NAMESPACE", "   ", "MEMAGENT_NAMESPACE"),
        ("MEMAGENT_EMBEDDING_PROVIDER", "cohere", "MEMAGENT_EMBEDDING_PROVIDER"),
        ("OPENAI_BASE_URL", "localhost:11434", "OPENAI_BASE_URL: must start with http"),
        ("MEMAGENT_IMPORTANCE_WEIGHT", "1.5", "MEMAGENT_IMPORTANCE_WEIGHT"),
        ("MEMAGENT_IMPORTANCE_WEIGHT", "heavy", "MEMAGENT_IMPORTANCE_WEIGHT"),
        ("MEMAGENT_SHARED_BUFFERS_MB", "8", "MEMAGENT_SHARED_BUFFERS_MB"),
        ("MEMAGENT_SHARED_BUFFERS_MB", "1GB", "MEMAGENT_SHARED_BUFFERS_MB"),
    ],
)
def test_invalid_settings_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        get_settings()
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_keyword_setting_is_named_as_the_keyword(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_NAMESPACE", "fine")  # (the environment's value is not the one at fault)
    expected = r"invalid setting namespace= \(MEMAGENT_NAMESPACE\): name must not be empty"
    with pytest.raises(ConfigError, match=expected):
        get_settings(namespace="")


def test_local_provider_refuses_other_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMAGENT_EMBEDDING_PROVIDER", "local")
    monkeypatch.setenv("MEMAGENT_EMBEDDING_MODEL", "text-embedding-3-small")
    with pytest.raises(ConfigError, match="bundles only"):
        get_settings().embedding_spec()


def test_config_shows_the_buffer_cache_the_embedded_server_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    from memagent.cli.settings_view import settings_rows
    from memagent.store.embedded_paths import shared_buffers_mb

    def cache() -> list[object]:
        return [
            value for name, value, _ in settings_rows(get_settings()) if name == "buffer cache (resolved)"
        ]

    assert cache() == [f"{shared_buffers_mb()} MB when the embedded server starts"]
    monkeypatch.setenv("MEMAGENT_SHARED_BUFFERS_MB", "48")
    assert cache() == ["48 MB when the embedded server starts"]
    monkeypatch.setenv("MEMAGENT_DATABASE_URL", "postgresql://app@db.example:5432/mem")
    assert cache() == []  # not memagent's server: nothing to size
