"""all-MiniLM-L6-v2 in numpy: the model's own tokenizer (the tokenizers library) and a direct forward pass
over its weights (safetensors), with sentence-transformers' pooling — mean over tokens, then L2 norm.

Six BERT layers, 384 wide, 12 heads: a few matrix products per layer that numpy hands to BLAS. Loading
takes ~0.1 s (the weights are memory-mapped) where importing torch and sentence-transformers took ~5 s, and
the vectors are within 2e-6 in cosine of sentence-transformers' (tests compare them with reference vectors).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

Array = Any  # NDArray[np.float32]; numpy's annotations make every expression here noisy


def _layer_norm(x: Array, weight: Array, bias: Array, *, eps: float) -> Array:
    """LayerNorm over the last axis, in place on x (which the caller no longer needs)."""
    x -= x.mean(axis=-1, keepdims=True)
    scale = np.square(x).mean(axis=-1, keepdims=True)
    scale += np.float32(eps)
    np.sqrt(scale, out=scale)
    np.reciprocal(scale, out=scale)
    x *= scale
    x *= weight
    x += bias
    return x


_SQRT_2_OVER_PI = np.float32(0.7978845608028654)
_CUBIC = np.float32(0.044715)
_HALF = np.float32(0.5)


def _gelu(x: Array, rows: int = 32) -> Array:
    """gelu in its tanh form, 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))), in place a few rows at a time.

    BERT's gelu is the erf form; the tanh form differs from it by at most 5e-4 per activation and moves the
    sentence vectors by less than 2e-6 in cosine (tests compare them with sentence-transformers' own), for
    four times less work than an exact erf in numpy: 12% more sentences per second (docs/benchmarks.md).
    A few rows at a time, each step works in the CPU's cache instead of streaming the array through memory.
    """
    out = np.empty_like(x)
    for start in range(0, x.shape[0], rows):
        part = x[start : start + rows]
        step = out[start : start + rows]
        np.multiply(part, part, out=step)
        step *= _CUBIC
        step += 1
        step *= part
        step *= _SQRT_2_OVER_PI
        np.tanh(step, out=step)
        step += 1
        step *= part
        step *= _HALF
    return out


class MiniLM:
    """The model in `path`: a sentence-transformers folder (config, model.safetensors, tokenizer.json)."""

    def __init__(self, path: Path, *, max_tokens: int | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        st_config = path / "sentence_bert_config.json"
        limit = json.loads(st_config.read_text()).get("max_seq_length") if st_config.exists() else None
        self.max_tokens = int(max_tokens or limit or config["max_position_embeddings"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.dim = int(config["hidden_size"])
        weights = load_file(str(path / "model.safetensors"))
        w = {name.removeprefix("bert."): value for name, value in weights.items()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.embed_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers: list[dict[str, Any]] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            # Query, key and value in one product. Weights stay as stored ([out, in]): BLAS multiplies by
            # their transpose without a copy.
            qkv = np.concatenate(
                [w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")], axis=0
            )
            self.layers.append(
                {
                    "qkv": qkv.T,
                    "qkv_b": np.concatenate(
                        [w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
                    ),
                    "out": w[p + "attention.output.dense.weight"].T,
                    "out_b": w[p + "attention.output.dense.bias"],
                    "norm1": (
                        w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"],
                    ),
                    "up": w[p + "intermediate.dense.weight"].T,
                    "up_b": w[p + "intermediate.dense.bias"],
                    "down": w[p + "output.dense.weight"].T,
                    "down_b": w[p + "output.dense.bias"],
                    "norm2": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
                }
            )
        self._busy = threading.Lock()
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids of each text, [CLS] … [SEP], cut at the model's limit."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """The character span of each token of the text (special tokens: (0, 0))."""
        return list(self.tokenizer.encode(text).offsets)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> NDArray[np.float32]:
        """Unit-length sentence vectors, shape (len(texts), dim). Texts of similar length share a batch.

        Several batches run at once, one per core, each with single-threaded BLAS: numpy's element-wise
        steps (gelu, softmax, layer norm) use one core each, so batches side by side keep every core busy
        (on 2 cores: 290-340 sentences/s instead of 190-200; docs/benchmarks.md).
        """
        ids = self.tokens(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

        def run(chosen: list[int]) -> None:
            out[chosen] = self._forward([ids[i] for i in chosen])

        workers = min(len(batches), os.cpu_count() or 1)
        with self._busy:  # one call at a time uses the cores (and sets BLAS's threads); others wait
            if workers <= 1:
                for chosen in batches:
                    run(chosen)  # one batch: BLAS uses every core for it
                return out
            from concurrent.futures import ThreadPoolExecutor

            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
                list(pool.map(run, batches))
        return out

    def _forward(self, batch: list[list[int]]) -> Array:
        size, length = len(batch), max(len(ids) for ids in batch)
        token_ids = np.zeros((size, length), dtype=np.int64)
        mask = np.zeros((size, length), dtype=np.float32)
        for row, ids in enumerate(batch):
            token_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        x = self.word[token_ids] + self.position[:length] + self.token_type
        x = _layer_norm(x.astype(np.float32), *self.embed_norm, eps=self.eps)
        heads, width = self.heads, self.dim // self.heads
        scale = np.float32(1.0 / np.sqrt(width))
        # Padding takes no attention: a large negative added to its scores before the softmax.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        x = x.reshape(size * length, self.dim)  # tokens as rows: each product is one 2-D BLAS call
        for layer in self.layers:
            qkv = x @ layer["qkv"]  # (tokens, 3 * dim); biases added in place, without a second array
            qkv += layer["qkv_b"]
            qkv = qkv.reshape(size, length, 3, heads, width).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (size, heads, length, width)
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            # exp(<-80) would be subnormal (slow in every later product) and is 0 to float32 precision.
            np.maximum(scores, np.float32(-80.0), out=scores)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(size * length, self.dim)
            attended = context @ layer["out"]
            attended += layer["out_b"]
            attended += x
            x = _layer_norm(attended, *layer["norm1"], eps=self.eps)
            hidden = x @ layer["up"]
            hidden += layer["up_b"]
            hidden = _gelu(hidden)
            projected = hidden @ layer["down"]
            projected += layer["down_b"]
            projected += x
            x = _layer_norm(projected, *layer["norm2"], eps=self.eps)
        x = x.reshape(size, length, self.dim)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
