"""Embedders: one protocol and the OpenAI(-compatible) embedder (the local model is in providers.local)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from memagent.config import EmbeddingSpec, Settings
from memagent.errors import ProviderError
from memagent.providers.openai_client import LazyClient
from memagent.providers.vectors import check_vectors

if TYPE_CHECKING:
    from numpy.typing import NDArray


class Embedder(Protocol):
    """Turns texts into vectors of one model and dimension."""

    @property
    def provider(self) -> str:
        """Who computes the vectors: "openai" (any OpenAI-compatible endpoint) or "local"."""
        ...

    @property
    def model(self) -> str:
        """The model name recorded with every stored vector."""
        ...

    @property
    def dim(self) -> int:
        """The length of the vectors."""
        ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts in batches; returns an array of shape (len(texts), dim)."""
        ...

    def covered(self, text: str) -> int:
        """How many leading characters of the text its embedding reads (models have an input limit)."""
        ...


# OpenAI's embedding models read at most 8,191 tokens. Every token is at least one byte of UTF-8, so the first
# 8,000 bytes always fit; longer texts are stored whole and embedded from their beginning.
OPENAI_MAX_INPUT_BYTES = 8000


def head_within(text: str, max_bytes: int) -> str:
    """The longest prefix of text whose UTF-8 encoding fits in max_bytes (never a split character)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


class OpenAIEmbedder:
    """Embeddings from OpenAI or any server speaking its API (Ollama, vLLM, LM Studio, llama.cpp …)."""

    def __init__(
        self,
        *,
        model: str,
        dim: int,
        base_url: str | None,
        api_key: str | None,
        batch_size: int = 64,
        timeout: float = 30.0,
        max_retries: int = 2,
        send_dimensions: bool = False,
    ) -> None:
        self._model = model
        self._dim = dim
        self._batch_size = batch_size
        self._send_dimensions = send_dimensions
        self._client = LazyClient(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )

    @property
    def provider(self) -> str:
        return "openai"

    @property
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        return self._dim

    def covered(self, text: str) -> int:
        return len(head_within(text, OPENAI_MAX_INPUT_BYTES))

    def release(self) -> None:
        """Close what belongs to an event loop that is ending (AsyncMemory's aclose)."""
        self._client.release()

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out: list[NDArray[np.float32]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = [head_within(t, OPENAI_MAX_INPUT_BYTES) for t in texts[start : start + self._batch_size]]
            extra: dict[str, Any] = {"dimensions": self._dim} if self._send_dimensions else {}
            with self._client.errors("embeddings", self._model):
                response = self._client.request(
                    lambda client: client.embeddings.create(
                        model=self._model,
                        input=batch,  # noqa: B023 (called at once, in this iteration)
                        **extra,  # noqa: B023
                    )
                )
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise ProviderError(
                    f"the embeddings provider returned {len(data)} vectors for {len(batch)} texts."
                )
            try:
                batch_vectors = np.asarray([item.embedding for item in data], dtype=np.float32)
            except (TypeError, ValueError):
                raise ProviderError("the embeddings provider returned vectors of unequal length.") from None
            out.append(check_vectors(batch_vectors, len(batch), self._dim, self._model))
        if not out:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.concatenate(out)


def make_embedder(settings: Settings, spec: EmbeddingSpec | None = None) -> Embedder:
    """The embedder the settings ask for (nothing is loaded or connected until the first embed)."""
    spec = spec or settings.embedding_spec()
    if spec.provider == "local":
        from memagent.providers.local import LocalEmbedder

        return LocalEmbedder(batch_size=settings.embedding_batch_size, path=settings.local_model_path)
    return OpenAIEmbedder(
        model=spec.model,
        dim=spec.dim,
        base_url=spec.base_url,
        api_key=spec.api_key.get_secret_value() if spec.api_key else None,
        batch_size=settings.embedding_batch_size,
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        # text-embedding-3 models can shorten their vectors; ask for that only when a dim is configured.
        send_dimensions=spec.model.startswith("text-embedding-3") and settings.embedding_dim is not None,
    )
