"""Chat models: one protocol and an OpenAI(-compatible) implementation. Built on demand."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from memagent.config import Settings
from memagent.errors import ConfigError
from memagent.providers.openai_client import LazyClient


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: str  # "system" | "user" | "assistant"
    content: str


class ChatModel(Protocol):
    """A chat model that streams its reply."""

    @property
    def model(self) -> str:
        """The model name."""
        ...

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """Yield the reply in pieces as they arrive; raises ProviderError on failure."""
        ...


class OpenAIChat:
    """Chat completions from OpenAI or any server speaking its API (Azure OpenAI v1, Ollama, vLLM …).

    The openai SDK retries connection errors, 408, 409, 429 and 5xx with exponential backoff and honours
    Retry-After; memagent sets how many times and the timeout per request.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        timeout: float = 60.0,
        max_retries: int = 2,
        temperature: float | None = None,
    ) -> None:
        self._model = model
        self._temperature = temperature
        self._client = LazyClient(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )

    @property
    def model(self) -> str:
        return self._model

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        extra: dict[str, Any] = {}
        if self._temperature is not None:
            extra["temperature"] = self._temperature
        with self._client.errors("chat", self._model):
            response = self._client.get().chat.completions.create(
                model=self._model,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                stream=True,
                **extra,
            )
            for chunk in response:
                if not chunk.choices:
                    continue
                piece = chunk.choices[0].delta.content
                if piece:
                    yield piece


def make_chat_model(settings: Settings) -> ChatModel:
    """The chat model the settings ask for; a ConfigError saying how to configure one if none is."""
    base_url = settings.chat_base_url or settings.openai_base_url
    key = settings.chat_api_key or settings.openai_api_key
    if base_url is None and key is None:
        raise ConfigError(
            "no chat model is configured: set OPENAI_API_KEY for OpenAI, or MEMAGENT_CHAT_BASE_URL "
            "(e.g. http://localhost:11434/v1 for Ollama) and MEMAGENT_CHAT_MODEL.",
            hint="remember, recall, inspect and purge work without one.",
        )
    return OpenAIChat(
        model=settings.chat_model,
        base_url=base_url,
        api_key=key.get_secret_value() if key else None,
        timeout=settings.chat_timeout,
        max_retries=settings.max_retries,
        temperature=settings.chat_temperature,
    )
