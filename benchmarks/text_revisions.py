"""Two revisions of the text ranking function side by side, question by question, on the same data.

    python benchmarks/text_revisions.py --data ../shared/benchdata/locomo/locomo_dev.json \
        --home /work/bench-home-1m --namespace big --old text_pairs --new text_repeats

Over a home built by benchmarks/hybrid_scale.py (its embedded server is started if needed): each revision's
memagent_text_ranking (the `function()` of the memagent.store module named) is created as a temporary
function of the benchmark's own session, nothing of the database changed, and both are called on the
first --queries distinct LoCoMo questions (depth 50, hybrid's floor, the namespace's memories now), in
turn, which first alternating per question. Printed: each one's p50 / p95 / p99 / mean in ms, how many
questions' results differed (rows, scores and order: none should), and the slowest questions of the old
one with both times. (PostgreSQL's per-transaction counters of rows and blocks fetched were tried for how
many memories each read: a call of 100 ms or more gave different counts run to run, so they are not used.)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CALL = "SELECT * FROM pg_temp.{name}(%s, NULL, NULL, %s, 50, NULL, NULL, false, %s)"


def temporary(module: str, name: str) -> str:
    """The module's CREATE FUNCTION memagent_text_ranking as pg_temp.<name>."""
    sql: str = importlib.import_module(f"memagent.store.{module}").function()
    head = "FUNCTION memagent_text_ranking("
    assert sql.count(head) == 1, module
    return sql.replace(head, f"FUNCTION pg_temp.{name}(", 1)


def call(cur: Any, name: str, namespace: str, question: str, floor: float) -> tuple[float, list[Any]]:
    """(seconds, rows) of one call."""
    start = time.perf_counter()
    cur.execute(CALL.format(name=name), (namespace, question, floor))
    rows = cur.fetchall()
    return time.perf_counter() - start, rows


def alternate(
    cur: Any, names: dict[str, str], namespace: str, questions: list[str], times: dict[str, list[float]]
) -> int:
    """Both rankings (names: two keys of times, each the name of its temporary function) on every question
    in turn, which first alternating, hybrid's floor; each call's seconds added to times. Returns how many
    questions' results differed."""
    from memagent.store.text_floor import FLOOR

    first, second = names
    differ = 0
    for i, question in enumerate(questions):
        rows = {}
        for which in (first, second) if i % 2 == 0 else (second, first):
            took, rows[which] = call(cur, names[which], namespace, question, FLOOR)
            times[which].append(took)
        differ += rows[first] != rows[second]
    return differ


def ranking_only(home: Path) -> None:
    """Settings for a home built by hybrid_scale.py, with no embedder asked for (the ranking is full-text
    only)."""
    os.environ.update(
        MEMAGENT_HOME=str(home),
        MEMAGENT_EMBEDDING_PROVIDER="openai",
        MEMAGENT_EMBEDDING_MODEL="bench",
        MEMAGENT_EMBEDDING_DIM="384",
        MEMAGENT_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )


def report(times: dict[str, list[float]], questions: list[str], differ: int, slowest: int) -> None:
    """Each ranking's p50 / p95 / p99 / mean, how many answers differed, and the first one's slowest
    questions with both times (two rankings, in the order given)."""
    from scale import pct

    for which, t in times.items():
        figures = " ".join(f"p{q} {pct(t, q):.2f}" for q in (50, 95, 99))
        print(f"{which}: {figures} mean {sum(t) / len(t) * 1000:.2f} ms")
    print(f"results differed: {differ} of {len(questions)}")
    first, second = times.values()
    print("slowest for the first: ms first / second")
    for i in sorted(range(len(questions)), key=lambda i: -first[i])[:slowest]:
        print(f"{first[i] * 1000:7.1f} / {second[i] * 1000:6.1f}  {questions[i][:70]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--namespace", default="big")
    parser.add_argument("--old", default="text_pairs", help="module of the earlier revision (0026)")
    parser.add_argument("--new", default="text_repeats", help="module of the later revision (0027)")
    parser.add_argument("--queries", type=int, default=900)
    parser.add_argument("--slowest", type=int, default=12)
    args = parser.parse_args()
    ranking_only(args.home)
    from hybrid_scale import locomo_turns

    from memagent.config import get_settings
    from memagent.store.database import Database
    from memagent.store.text_floor import FLOOR

    questions = locomo_turns(args.data)[1][: args.queries]
    names = {"old": "ranking_old", "new": "ranking_new"}
    times: dict[str, list[float]] = {"old": [], "new": []}
    with Database(get_settings()) as db:
        raw = db.engine.raw_connection()
        try:
            conn: Any = raw.driver_connection
            conn.autocommit = True  # (each call a transaction of its own; the functions last the session)
            cur = conn.cursor()
            for which, name in names.items():
                cur.execute(temporary(getattr(args, which), name))
            differ = alternate(cur, names, args.namespace, questions, times)
        finally:
            raw.close()
    print(f"{len(questions)} questions, namespace {args.namespace!r}, depth 50, floor {FLOOR}")
    named = {f"old ({args.old})": times["old"], f"new ({args.new})": times["new"]}
    report(named, questions, differ, args.slowest)


if __name__ == "__main__":
    main()
