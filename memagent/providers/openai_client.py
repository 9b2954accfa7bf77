"""The one place an openai.OpenAI client is built (embeddings and chat alike), and its one error mapper."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from memagent import bridge
from memagent.errors import ProviderError
from memagent.redact import redact


class LazyClient:
    """Connection settings for an OpenAI-compatible endpoint; the client is built on the first get()."""

    def __init__(
        self, *, base_url: str | None, api_key: str | None, timeout: float, max_retries: int
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self._api_key = api_key
        self._client: Any = None
        self._async: tuple[Any, Any] | None = None  # (event loop, openai.AsyncOpenAI) for AsyncMemory

    @property
    def where(self) -> str:
        """The endpoint, for messages (credentials in the URL masked)."""
        return redact(self.base_url) if self.base_url else "api.openai.com"

    def get(self) -> Any:
        """The openai.OpenAI client; the SDK insists on a key even for local servers that ignore it."""
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(
                api_key=self._api_key or "not-needed",
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
        return self._client

    def request(self, call: Callable[[Any], Any]) -> Any:
        """call(client): one SDK call. From AsyncMemory's bridge it is made with the async client (one per
        event loop) and awaited, so the loop serves other tasks while the provider answers."""
        if not bridge.bridged():
            return call(self.get())
        import asyncio

        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                api_key=self._api_key or "not-needed",
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
            self._async = (loop, client)
        return bridge.wait(call(self._async[1]))

    def release(self) -> None:
        """Close the async client, which belongs to the event loop it was made on (AsyncMemory's aclose):
        from the bridge on that loop it is closed there, else let go; a later call makes another."""
        if self._async is None:
            return
        import asyncio

        loop, client = self._async
        self._async = None
        if bridge.bridged() and asyncio.get_running_loop() is loop:
            bridge.wait(client.close())

    def stream(self, call: Callable[[Any], Any]) -> Iterator[Any]:
        """The chunks of a streamed SDK call (call(client) with stream=True), as request() makes it."""
        response = self.request(call)
        return bridge.iterate(response) if bridge.bridged() else iter(response)

    @contextmanager
    def errors(self, what: Literal["embeddings", "chat"], model: str) -> Iterator[None]:
        """Turn the SDK's errors (raised after its retries) into one-line ProviderErrors."""
        import openai

        provider, where = f"the {what} provider", self.where
        try:
            yield
        except openai.AuthenticationError:
            variable = "MEMAGENT_EMBEDDING_API_KEY" if what == "embeddings" else "MEMAGENT_CHAT_API_KEY"
            raise ProviderError(
                f"{provider} at {where} rejected the API key (model {model}).",
                hint=f"Check OPENAI_API_KEY or {variable}.",
            ) from None
        except openai.RateLimitError:
            raise ProviderError(
                f"{provider} answered HTTP 429 (rate limit) after {self.max_retries} retries."
            ) from None
        except openai.NotFoundError:
            raise ProviderError(f"{provider} at {where} does not know model {model!r}.") from None
        except openai.APIStatusError as exc:
            raise ProviderError(
                f"{provider} answered HTTP {exc.status_code} for model {model}: {redact(_short(exc.message))}"
            ) from None
        except openai.APITimeoutError:
            raise ProviderError(
                f"{provider} did not answer within {self.timeout:g}s (after {self.max_retries} retries)."
            ) from None
        except openai.APIConnectionError:
            raise ProviderError(f"cannot reach {provider} at {where}.") from None


def _short(message: str, limit: int = 200) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
