"""The one place an openai.OpenAI client is built (for embeddings and chat alike), on first use."""

from __future__ import annotations

from typing import Any


def build_client(*, base_url: str | None, api_key: str | None, timeout: float, max_retries: int) -> Any:
    """An OpenAI client; the SDK insists on a key even for local servers that ignore it."""
    from openai import OpenAI

    return OpenAI(
        api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, max_retries=max_retries
    )
