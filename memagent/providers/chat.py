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


@dataclass(frozen=True)
class JsonSchema:
    """A JSON schema the reply must match, under a name (OpenAI's structured output wants one)."""

    name: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Completion:
    """A whole reply and what it cost (tokens as the provider counted them; 0 when it did not say)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatModel(Protocol):
    """A chat model that streams its reply."""

    @property
    def model(self) -> str:
        """The model name."""
        ...

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """Yield the reply in pieces as they arrive; raises ProviderError on failure."""
        ...

    def complete(self, messages: Sequence[Message], *, schema: JsonSchema | None = None) -> Completion:
        """The whole reply at once; with a schema, asked for as JSON matching it (structured output where
        the endpoint has it, plain JSON mode where it does not). Raises ProviderError on failure."""
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
        self._refused = 0  # how many of the JSON reply formats (structured, JSON mode) the endpoint refused
        self._client = LazyClient(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )

    @property
    def model(self) -> str:
        return self._model

    def release(self) -> None:
        """Close what belongs to an event loop that is ending (AsyncMemory's aclose)."""
        self._client.release()

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        extra: dict[str, Any] = {}
        if self._temperature is not None:
            extra["temperature"] = self._temperature
        with self._client.errors("chat", self._model):
            chunks = self._client.stream(
                lambda client: client.chat.completions.create(
                    model=self._model,
                    messages=[{"role": m.role, "content": m.content} for m in messages],
                    stream=True,
                    **extra,
                )
            )
            for chunk in chunks:
                if not chunk.choices:
                    continue
                piece = chunk.choices[0].delta.content
                if piece:
                    yield piece

    def complete(self, messages: Sequence[Message], *, schema: JsonSchema | None = None) -> Completion:
        import openai

        extra: dict[str, Any] = {}
        if self._temperature is not None:
            extra["temperature"] = self._temperature
        # Structured output first; many OpenAI-compatible servers lack it (some lack JSON mode too): the
        # caller validates the reply either way, so fall back to JSON mode, then to plain text.
        formats: list[dict[str, Any] | None] = [None]
        if schema is not None:
            structured = {"name": schema.name, "schema": schema.schema, "strict": True}
            formats = [{"type": "json_schema", "json_schema": structured}, {"type": "json_object"}, None]
            formats = formats[self._refused :]
        with self._client.errors("chat", self._model):
            for index, response_format in enumerate(formats):
                options = dict(extra)
                if response_format is not None:
                    options["response_format"] = response_format
                try:
                    response = self._client.request(
                        lambda client: client.chat.completions.create(
                            model=self._model,
                            messages=[{"role": m.role, "content": m.content} for m in messages],
                            **options,  # noqa: B023 (called at once, in this iteration)
                        )
                    )
                except openai.BadRequestError as exc:
                    # Only a refusal of the format itself steps down; any other 400 (a context too long)
                    # is the request's own failure.
                    if index + 1 == len(formats) or not _about_format(exc):
                        raise
                    self._refused += 1  # this endpoint refused that format: don't ask for it again
                    continue
                choice = response.choices[0] if response.choices else None
                usage = getattr(response, "usage", None)
                return Completion(
                    text=(choice.message.content or "") if choice is not None else "",
                    prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                    completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                )
        raise AssertionError("unreachable")


def _about_format(error: Exception) -> bool:
    """Whether an HTTP 400 is about the reply format asked for (servers name the field they refuse)."""
    said = str(getattr(error, "message", error)).lower()
    return any(
        word in said for word in ("response_format", "json_schema", "json_object", "json mode", "schema")
    )


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
