"""Sentences per second of the bundled local embedder (all-MiniLM-L6-v2 on the CPU).

python benchmarks/local_embedder.py                       # synthetic chat-like sentences
python benchmarks/local_embedder.py --data ../shared/benchdata/locomo/locomo_dev.json   # real turns
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

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
    parser.add_argument("--data", type=Path, default=None, help="a LoCoMo JSON file for real dialogue turns")
    args = parser.parse_args()

    texts = sentences(args.count, args.data)
    embedder = LocalEmbedder(batch_size=args.batch_size)
    start = time.perf_counter()
    embedder.embed(["warm up"])
    load = time.perf_counter() - start
    start = time.perf_counter()
    embedder.embed(texts)
    elapsed = time.perf_counter() - start
    single = []
    for text in texts[:50]:
        t0 = time.perf_counter()
        embedder.embed([text])
        single.append(time.perf_counter() - t0)
    single.sort()
    print(f"model load: {load:.2f} s")
    print(f"batched: {len(texts)} sentences in {elapsed:.2f} s = {len(texts) / elapsed:.0f} sentences/s")
    print(f"one at a time: median {single[len(single) // 2] * 1000:.1f} ms per sentence")


if __name__ == "__main__":
    main()
