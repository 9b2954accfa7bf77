"""Calibrating a relevance cut-off for recall on LoCoMo (dev part), unanswerable questions included.

Every dialogue turn is stored as in benchmarks/locomo.py; each question is recalled in hybrid mode (top 10)
and, to know which memories full-text search found, in text mode (top 50). Each recalled memory is labelled
evidence (a turn that answers the question) or not, with its cosine distance, its fused score and whether
full-text search found it. Candidate cut-offs are then scored:

- distance:    keep a memory whose cosine distance is at most D (`--max-distance D`)
- text-or-distance: keep a memory full-text search found, or whose distance is at most D
- relative:    keep a memory whose distance is at most the best one's + D

For each: the share of recalled evidence kept, the share of the rest dropped, R@10 after the cut, and the
memories left per question (answerable 1-4, and adversarial 5, whose evidence is a turn about someone else).

    python benchmarks/relevance.py --data ../shared/benchdata/locomo/locomo_dev.json

The figures depend on the embedding model (run it with the model you use); docs/benchmarks.md has them for
the bundled all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locomo import load


@dataclass(frozen=True)
class Recalled:
    evidence: bool
    distance: float
    score: float
    text: bool  # full-text search found it


@dataclass(frozen=True)
class Asked:
    category: int
    evidence: frozenset[str]
    recalled: list[tuple[Recalled, frozenset[str]]]  # each with the turn ids it stands for


def collect(data: Path) -> list[Asked]:
    from memagent.bootstrap import open_service
    from memagent.config import get_settings

    asked: list[Asked] = []
    with open_service(get_settings()) as memory:
        for conv in load(data):
            namespace = f"relevance-{conv.sample_id}-{os.getpid()}"
            ids: dict[str, set[str]] = defaultdict(set)
            by_date = defaultdict(list)
            for turn in conv.turns:
                ids[turn.content.strip()].add(turn.dia_id)
                by_date[turn.created_at].append(turn.content)
            for when, texts in by_date.items():
                memory.remember_many(texts, namespace=namespace, session_id=conv.sample_id, created_at=when)
            for question in conv.questions:
                found = memory.recall(question.text, k=10, namespace=namespace, mode="hybrid")
                text_found = {
                    m.id for m in memory.recall(question.text, k=50, namespace=namespace, mode="text")
                }
                evidence = frozenset(question.evidence)
                recalled = [
                    (
                        Recalled(
                            bool(ids[m.content] & evidence),
                            m.distance if m.distance is not None else 2.0,
                            m.score,
                            m.id in text_found,
                        ),
                        frozenset(ids[m.content]),
                    )
                    for m in found
                ]
                asked.append(Asked(question.category, evidence, recalled))
            memory.purge(namespace=namespace)
    return asked


def evaluate(asked: list[Asked], keep: object, label: str, threshold: float) -> dict[str, object]:
    kept_evidence = total_evidence = dropped_other = total_other = 0
    recall_after: list[float] = []
    left_answerable: list[int] = []
    left_adversarial: list[int] = []
    for question in asked:
        best = min((r.distance for r, _ in question.recalled), default=2.0)
        kept = [(r, ids) for r, ids in question.recalled if keep(r, best, threshold)]  # type: ignore[operator]
        for r, _ in question.recalled:
            if r.evidence:
                total_evidence += 1
                kept_evidence += any(r is k for k, _ in kept)
            else:
                total_other += 1
                dropped_other += not any(r is k for k, _ in kept)
        found: set[str] = set().union(*(ids for _, ids in kept)) if kept else set()
        if question.category == 5:
            left_adversarial.append(len(kept))
        else:
            recall_after.append(len(found & question.evidence) / len(question.evidence))
            left_answerable.append(len(kept))
    return {
        "rule": label,
        "threshold": threshold,
        "evidence kept %": 100 * kept_evidence / max(total_evidence, 1),
        "others dropped %": 100 * dropped_other / max(total_other, 1),
        "R@10 (1-4)": 100 * statistics.fmean(recall_after),
        "left per question (1-4)": statistics.fmean(left_answerable),
        "left per question (5)": statistics.fmean(left_adversarial) if left_adversarial else 0.0,
    }


RULES = {
    "distance": lambda r, best, t: r.distance <= t,
    "text-or-distance": lambda r, best, t: r.text or r.distance <= t,
    "relative": lambda r, best, t: r.distance <= best + t,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="a LoCoMo JSON file")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    temp_home = None
    if "MEMAGENT_DATABASE_URL" not in os.environ and "MEMAGENT_HOME" not in os.environ:
        temp_home = Path(tempfile.mkdtemp(prefix="memagent-relevance-"))
        os.environ["MEMAGENT_HOME"] = str(temp_home)
    try:
        asked = collect(args.data)
    finally:
        if temp_home is not None:
            from memagent.store.embedded import EmbeddedPostgres

            EmbeddedPostgres(temp_home).destroy()
            shutil.rmtree(temp_home, ignore_errors=True)
    rows = [evaluate(asked, lambda r, best, t: True, "none", 0.0)]
    for label, rule in RULES.items():
        steps = (
            [x / 100 for x in range(5, 40, 5)]
            if label == "relative"
            else [x / 100 for x in range(40, 105, 5)]
        )
        rows += [evaluate(asked, rule, label, t) for t in steps]
    header = list(rows[0])
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
