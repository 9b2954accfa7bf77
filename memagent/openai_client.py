"""The one place an openai.OpenAI client is built (for embeddings and chat alike), on first use."""

from __future__ import annotations

from typing import Any


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

    @property
    def where(self) -> str:
        """The endpoint, for messages."""
        return self.base_url or "api.openai.com"

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
