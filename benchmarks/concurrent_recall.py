"""Many recalls at once: AsyncMemory on one event loop beside Memory on threads.

    python benchmarks/concurrent_recall.py --rows 20000 --dim 384 --calls 200 --json concurrent.json

A fresh embedded server (a temporary MEMAGENT_HOME) holds --rows memories in one namespace: texts of 12
words drawn Zipf-like from 5,000 (so the default hybrid mode's full-text side has real work), clustered
vectors, loaded by `memagent import` (COPY, one HNSW build). The embedder returns each query's precomputed
vector, so what is measured is memagent and PostgreSQL, not a model. Each round sends --calls recalls
(k 10, --mode) and measures the wall time (recalls/s) and each call's latency from the moment all were
submitted (p50/p95, so queueing for a connection counts):

- async: one AsyncMemory, all calls started at once with asyncio.gather on one event loop (its pool:
  memagent.store.async_engine, 10 connections + 10 overflow);
- sync on threads: one Memory shared by --threads worker threads (its pool: 2 connections + 4 overflow);
- each also one call at a time (sequential), for the cost of a single recall.

Both doors must return the same memories for every query; the script checks it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scale import make_vectors, pct, temporary_home

WORDS = [
    "garden",
    "tea",
    "compiler",
    "river",
    "piano",
    "Berlin",
    "cat",
    "marathon",
    "recipe",
    "painting",
    "camera",
    "guitar",
    "novel",
    "hiking",
    "museum",
    "coffee",
    "budget",
    "yoga",
    "chess",
    "bicycle",
    "festival",
    "violin",
    "pottery",
    "sailing",
    "harvest",
    "lecture",
]
MODEL = "bench-vectors"


class QueryVectors:
    """An embedder that looks each query's vector up (thread- and task-safe: nothing shared changes)."""

    provider = "openai"
    model = MODEL

    def __init__(self, table: dict[str, np.ndarray], dim: int) -> None:
        self.table, self.dim = table, dim

    def embed(self, texts: Sequence[str]) -> Any:
        return np.asarray([self.table[t] for t in texts], dtype=np.float32)

    def covered(self, text: str) -> int:
        return len(text)


def vocabulary(size: int, seed: int) -> list[str]:
    """Made-up words (distinct), drawn Zipf-like below: a few common, most rare, as in real text."""
    rng = np.random.default_rng(seed)
    syllables = [a + b for a in "bdfgklmnprstvz" for b in "aeiou"]
    words: set[str] = set(WORDS)
    while len(words) < size:
        words.add("".join(rng.choice(syllables, size=int(rng.integers(2, 4)))))
    return list(rng.permutation(sorted(words)))  # ranks at random: the queries' words common or rare alike


def content(i: int, rng: np.random.Generator, words: list[str], weights: np.ndarray) -> str:
    return f"memory {i}: " + " ".join(rng.choice(words, size=12, p=weights))


def write_dump(path: Path, vectors: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = vocabulary(5000, seed)
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    with open(path, "w", encoding="utf-8") as out:
        for i, v in enumerate(vectors):
            record = {
                "namespace": "bench",
                "session_id": f"s{i % 50}",
                "content": content(i, rng, words, weights),
                "metadata": {},
                "created_at": "2026-11-01T12:00:00+00:00",
                "embedding_model": MODEL,
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode("ascii"),
            }
            out.write(json.dumps(record) + "\n")


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    return {"per_s": len(latencies) / wall, "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95)}


def sync_round(memory: Any, queries: list[str], threads: int, k: int) -> tuple[dict[str, float], list[Any]]:
    started = time.perf_counter()
    latencies: list[float] = [0.0] * len(queries)

    def one(i: int) -> list[int]:
        found = [m.id for m in memory.recall(queries[i], k=k)]
        latencies[i] = time.perf_counter() - started
        return found

    if threads == 1:
        answers = []
        for i in range(len(queries)):
            t = time.perf_counter()
            answers.append(one(i))
            latencies[i] = time.perf_counter() - t
    else:
        with ThreadPoolExecutor(threads) as pool:
            answers = list(pool.map(one, range(len(queries))))
    return summary(latencies, time.perf_counter() - started), answers


async def async_round(
    memory: Any, queries: list[str], together: bool, k: int
) -> tuple[dict[str, float], list[Any]]:
    started = time.perf_counter()
    latencies: list[float] = [0.0] * len(queries)

    async def one(i: int) -> list[int]:
        t = time.perf_counter() if not together else started
        found = [m.id for m in await memory.recall(queries[i], k=k)]
        latencies[i] = time.perf_counter() - t
        return found

    if together:
        answers = await asyncio.gather(*(one(i) for i in range(len(queries))))
    else:
        answers = [await one(i) for i in range(len(queries))]
    return summary(latencies, time.perf_counter() - started), list(answers)


def best(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The median round (by recalls/s) of several."""
    return sorted(rounds, key=lambda r: r["per_s"])[len(rounds) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--threads", type=int, default=16, help="worker threads for the sync API")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="hybrid", choices=["vector", "text", "hybrid"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    vectors = make_vectors(args.rows, args.dim, seed=1)
    rng = np.random.default_rng(7)
    queries = [" ".join(rng.choice(WORDS, size=4)) + f" #{i}" for i in range(args.calls)]
    table = dict(zip(queries, make_vectors(args.calls, args.dim, seed=2), strict=True))
    figures: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "json"}

    with temporary_home("memagent-concurrent-") as home:
        from sqlalchemy import text

        from memagent import AsyncMemory, Memory
        from memagent.bootstrap import open_service
        from memagent.config import get_settings
        from memagent.store.database import Database
        from memagent.usecases.transfer import Transfer

        dump = home / "dump.jsonl"
        write_dump(dump, vectors, seed=3)
        settings = get_settings(
            embedding_provider="openai", embedding_model=MODEL, embedding_dim=args.dim, recall_mode=args.mode
        )
        embedder = QueryVectors(table, args.dim)
        with open_service(settings, embedder=embedder) as service:
            Transfer(service).import_file(dump)
        with Database(settings) as db, db.sessions.begin() as session:
            # Statistics now, not when autovacuum gets to them: a plan that changes midway (the first
            # recalls planned without statistics) would make the doors' answers differ for no fault of theirs.
            session.execute(text("ANALYZE"))
        print(f"{args.rows} memories loaded; {args.calls} recalls per round, mode {args.mode}", flush=True)

        runs: dict[str, list[dict[str, float]]] = {}
        answers: dict[str, list[Any]] = {}

        def record(name: str, round_: Callable[[], tuple[dict[str, float], list[Any]]]) -> None:
            out, found = round_()
            runs.setdefault(name, []).append(out)
            answers.setdefault(name, found)

        with Memory(settings=settings, embedder=embedder, namespace="bench") as memory:
            sync_round(memory, queries[:20], args.threads, args.k)  # warm-up: connections, caches
            for _ in range(args.rounds):
                record("sync, one at a time", lambda: sync_round(memory, queries, 1, args.k))
                record(
                    f"sync, {args.threads} threads", lambda: sync_round(memory, queries, args.threads, args.k)
                )

        async def async_runs() -> None:
            async with AsyncMemory(settings=settings, embedder=embedder, namespace="bench") as memory:
                await async_round(memory, queries[:20], True, args.k)  # warm-up
                for _ in range(args.rounds):
                    out, found = await async_round(memory, queries, False, args.k)
                    runs.setdefault("async, one at a time", []).append(out)
                    answers.setdefault("async, one at a time", found)
                    out, found = await async_round(memory, queries, True, args.k)
                    runs.setdefault(f"async, {args.calls} at once", []).append(out)
                    answers.setdefault(f"async, {args.calls} at once", found)

        asyncio.run(async_runs())

    reference = answers["sync, one at a time"]
    same = {name: found == reference for name, found in answers.items()}
    print(f"{'':32} {'recalls/s':>10} {'p50 ms':>8} {'p95 ms':>8}  (median of {args.rounds} rounds)")
    for name, rounds in runs.items():
        b = best(rounds)
        print(
            f"{name:32} {b['per_s']:10.0f} {b['p50_ms']:8.1f} {b['p95_ms']:8.1f}  same answers: {same[name]}"
        )
        figures[name] = {**b, "rounds": rounds, "same_answers": same[name]}
    figures["per_call_sequential_ms"] = {
        name: statistics.fmean(r["p50_ms"] for r in rounds)
        for name, rounds in runs.items()
        if "one at" in name
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if not all(same.values()):
        for name, found in answers.items():
            for q, (mine, theirs) in enumerate(zip(found, reference, strict=True)):
                if mine != theirs:
                    print(f"{name}, query {q}: {mine} where one at a time on threads gave {theirs}")
                    break
        sys.exit("the two front doors returned different memories")


if __name__ == "__main__":
    main()
