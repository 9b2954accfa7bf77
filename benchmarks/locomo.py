"""Evidence recall of memagent on LoCoMo conversations, through memagent's real write and recall paths.

For each conversation: a fresh namespace; every dialogue turn stored as one memory
"(<session date>) <speaker>: <text>" with created_at set to the session date; then every question that has
evidence is recalled (top 25) and scored against the turns that answer it.

    python benchmarks/locomo.py --data ../shared/benchdata/locomo/locomo_dev.json --mode hybrid
    python benchmarks/locomo.py --data … --mode vector --json results-vector.json
    python benchmarks/locomo.py --data … --facts linked     # fact memory: LoCoMo's observations as facts
    python benchmarks/locomo.py --data … --facts observations --merge-threshold 0.85  # learnt by memagent
    python benchmarks/locomo.py --data … --facts linked --fact-importance 0.8 --importance-weight 0.2

--facts: LoCoMo ships, per session, facts an LLM extracted from the dialogue ("observations"), each naming
the turn(s) it came from — a stand-in for an extractor's output. `plain` stores them beside the turns as
ordinary memories; `linked` stores them as memories of kind fact linked to their turns (memory_sources),
so that recall lets a fact stand for the turns it came from; `only` stores the facts without the turns.
Each observation is stored as "(<session date>) <text>", like a turn. A recalled observation covers its
turns; the metrics are unchanged. `observations` learns them instead: memagent's Learner extracts and
consolidates them from the stored turns, with a stand-in model that returns each turn's observations and
merges a new fact into a held one at --merge-threshold cosine similarity (benchmarks/locomo_observations.py);
a merged fact covers the turns of both.

LoCoMo's observations carry no importance: --fact-importance gives them one (the turns keep the default
0.5), and --importance-weight sets recall's importance blend.

Metrics, per category and overall: fractional evidence recall@k (the share of a question's evidence turns
in the top k), hit@k (any evidence turn in the top k) and MRR (over the top 25). Categories: 1 multi-hop,
2 temporal, 3 open-domain, 4 single-hop, 5 adversarial; the headline is "overall (1-4)".

The data set is CC BY-NC 4.0: pass its path, never copy it into this repository. By default the run uses
the embedded server in a temporary MEMAGENT_HOME, so your own memories are not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KS = (1, 5, 10, 25)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
EVIDENCE_ID = re.compile(r"D(\d+):(\d+)")


@dataclass
class Turn:
    dia_id: str
    content: str
    created_at: datetime


@dataclass
class Question:
    text: str
    category: int
    evidence: list[str]


@dataclass
class Observation:
    content: str
    created_at: datetime
    evidence: list[str]


@dataclass
class Conversation:
    sample_id: str
    turns: list[Turn]
    questions: list[Question]
    dropped_evidence: int = 0
    malformed_evidence: int = 0
    observations: list[Observation] = field(default_factory=list)


@dataclass
class Scores:
    recall: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    hit: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    rr: list[float] = field(default_factory=list)

    def add(self, ranked: list[set[str]], evidence: set[str]) -> None:
        for k in KS:
            found: set[str] = set().union(*ranked[:k]) if ranked[:k] else set()
            self.recall[k].append(len(found & evidence) / len(evidence))
            self.hit[k].append(1.0 if found & evidence else 0.0)
        rank = next((i for i, ids in enumerate(ranked, start=1) if ids & evidence), None)
        self.rr.append(1.0 / rank if rank else 0.0)

    def merge(self, other: Scores) -> None:
        for k in KS:
            self.recall[k].extend(other.recall[k])
            self.hit[k].extend(other.hit[k])
        self.rr.extend(other.rr)

    def summary(self) -> dict[str, Any]:
        n = len(self.rr)
        return {
            "questions": n,
            **{f"R@{k}": 100 * statistics.fmean(self.recall[k]) if n else 0.0 for k in KS},
            **{f"hit@{k}": 100 * statistics.fmean(self.hit[k]) if n else 0.0 for k in KS},
            "MRR": statistics.fmean(self.rr) if n else 0.0,
        }


def parse_date(text: str) -> datetime:
    """LoCoMo session dates look like '1:56 pm on 8 May, 2023'."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def normalise_evidence(raw: list[str]) -> tuple[list[str], int]:
    """'D8:6; D9:17' → ['D8:6', 'D9:17'], 'D30:05' → 'D30:5'; returns the ids and how many were malformed."""
    ids: list[str] = []
    malformed = 0
    for item in raw:
        text = str(item).strip()
        canonical = [f"D{int(a)}:{int(b)}" for a, b in EVIDENCE_ID.findall(text)]
        if canonical != [text]:
            malformed += 1
        ids.extend(canonical)
    return ids, malformed


def load(path: Path, *, dated: bool = True) -> list[Conversation]:
    conversations = []
    for sample in json.loads(path.read_text()):
        conv = sample["conversation"]
        turns: list[Turn] = []
        for key, value in conv.items():
            if re.fullmatch(r"session_\d+", key) and isinstance(value, list):
                when = parse_date(conv[f"{key}_date_time"])
                date_text = conv[f"{key}_date_time"]
                for turn in value:
                    dia_id = normalise_evidence([turn["dia_id"]])[0][0]
                    content = f"({date_text}) {turn['speaker']}: {turn['text']}"
                    turns.append(Turn(dia_id, content, when))
        known = {t.dia_id for t in turns}
        questions: list[Question] = []
        dropped = malformed = 0
        for qa in sample["qa"]:
            ids, bad = normalise_evidence(qa.get("evidence", []))
            malformed += bad
            kept = [i for i in dict.fromkeys(ids) if i in known]
            dropped += len(set(ids)) - len(kept)
            if kept:
                questions.append(Question(qa["question"], int(qa["category"]), kept))
        observations: list[Observation] = []
        for key, by_speaker in (sample.get("observation") or {}).items():
            session = key.removesuffix("_observation")
            if f"{session}_date_time" not in conv or not isinstance(by_speaker, dict):
                continue
            date_text = conv[f"{session}_date_time"]
            for facts in by_speaker.values():
                for text, evidence in facts:
                    raw = evidence if isinstance(evidence, list) else [evidence]
                    ids = [i for i in normalise_evidence([str(e) for e in raw])[0] if i in known]
                    if ids:
                        observations.append(
                            Observation(
                                f"({date_text}) {text}" if dated else text, parse_date(date_text), ids
                            )
                        )
        conversations.append(
            Conversation(sample["sample_id"], turns, questions, dropped, malformed, observations)
        )
    return conversations


def store_observations(
    memory: Any,
    conv: Conversation,
    namespace: str,
    memory_of_turn: dict[str, int],
    how: str,
    importance: float | None = None,
) -> int:
    """Store the conversation's observations (plain memories, or facts linked to their turns), each of the
    given importance (None: the default, as the turns)."""
    by_date: dict[datetime, list[Observation]] = defaultdict(list)
    for o in conv.observations:
        by_date[o.created_at].append(o)
    for when, observations in by_date.items():
        memory.remember_many(
            [o.content for o in observations],
            namespace=namespace,
            session_id=conv.sample_id,
            created_at=when,
            kind="exchange" if how == "plain" else "fact",
            importance=None if importance is None else [importance] * len(observations),
            sources=[[memory_of_turn[i] for i in o.evidence] for o in observations]
            if how == "linked"
            else None,
        )
    return len(conv.observations)


def learn_observations(
    memory: Any,
    conv: Conversation,
    namespace: str,
    memory_of_turn: dict[str, int],
    ids_by_content: dict[str, set[str]],
    args: argparse.Namespace,
) -> int:
    """The observations learnt from the stored turns by memagent's Learner with the stand-in model
    (benchmarks/locomo_observations.py), session by session; returns how many facts were stored."""
    from locomo_observations import ObservationModel

    from memagent.usecases.learning import Learner

    model = ObservationModel(memory.embedder, args.merge_threshold)
    turn_of = {memory_of_turn[t.dia_id]: t for t in conv.turns if t.dia_id in memory_of_turn}
    for o in conv.observations:
        text = " ".join(o.content.split())
        turn = next(t for t in conv.turns if t.dia_id == o.evidence[0])
        model.facts_of_turn.setdefault(turn.content, []).append(text)
        ids_by_content[text].update(o.evidence)
    learner = Learner(memory, model)
    added = 0
    for when in sorted({t.created_at for t in turn_of.values()}):
        ids = [i for i, t in turn_of.items() if t.created_at == when]
        report = learner.extract(namespace=namespace, ids=ids, limit=len(ids))
        assert not report.failed, report.failed
        added += len(report.added)
    for text, into in model.merged.items():  # a merged fact covers its turns through the one it joined
        ids_by_content[into].update(ids_by_content[text])
    args.merged = getattr(args, "merged", 0) + len(model.merged)
    return added


def run(args: argparse.Namespace) -> dict[str, Any]:
    from memagent.bootstrap import open_service
    from memagent.config import get_settings

    settings = get_settings()
    conversations = load(args.data, dated=not args.undated_facts)
    by_category: dict[int, Scores] = defaultdict(Scores)
    ingest_seconds = query_seconds = 0.0
    stored = questions = 0
    dump = args.dump.open("w") if args.dump is not None else None
    with open_service(settings) as memory:
        for conv in conversations:
            namespace = f"locomo-{conv.sample_id}-{os.getpid()}"
            memory.purge(namespace=namespace)
            start = time.perf_counter()
            ids_by_content: dict[str, set[str]] = defaultdict(set)
            by_date: dict[datetime, list[Turn]] = defaultdict(list)
            for turn in conv.turns:
                ids_by_content[turn.content.strip()].add(turn.dia_id)
                by_date[turn.created_at].append(turn)
            memory_of_turn: dict[str, int] = {}
            for when, turns in by_date.items() if args.facts != "only" else ():
                results = memory.remember_many(
                    [t.content for t in turns],
                    namespace=namespace,
                    session_id=conv.sample_id,
                    created_at=when,
                )
                memory_of_turn |= {t.dia_id: r.id for t, r in zip(turns, results, strict=True)}
            stored += len(memory_of_turn)
            if args.facts == "observations":
                stored += learn_observations(memory, conv, namespace, memory_of_turn, ids_by_content, args)
            elif args.facts != "none":
                stored += store_observations(
                    memory, conv, namespace, memory_of_turn, args.facts, args.fact_importance
                )
                for o in conv.observations:
                    ids_by_content[o.content.strip()].update(o.evidence)
            ingest_seconds += time.perf_counter() - start
            start = time.perf_counter()
            for question in conv.questions:
                found = memory.recall(question.text, k=max(KS), namespace=namespace, mode=args.mode)
                ranked = [ids_by_content[m.content] for m in found]
                by_category[question.category].add(ranked, set(question.evidence))
                if dump is not None:  # what each question got, for looking into the figures
                    entry = {
                        "sample": conv.sample_id,
                        "question": question.text,
                        "category": question.category,
                        "evidence": question.evidence,
                        "ranked": [
                            {"covers": sorted(ids), "kind": m.kind, "score": m.score, "id": m.id}
                            for ids, m in zip(ranked, found, strict=True)
                        ],
                    }
                    dump.write(json.dumps(entry) + "\n")
                questions += 1
            query_seconds += time.perf_counter() - start
            if not args.keep:
                memory.purge(namespace=namespace)
    if dump is not None:
        dump.close()
    overall = Scores()
    for category in (1, 2, 3, 4):
        overall.merge(by_category[category])
    everything = Scores()
    for scores in by_category.values():
        everything.merge(scores)
    return {
        "mode": args.mode,
        "facts": args.facts,
        **(
            {"merge_threshold": args.merge_threshold, "merged": getattr(args, "merged", 0)}
            if args.facts == "observations"
            else {}
        ),
        "recency_half_life_days": settings.recency_half_life_days,
        "importance_weight": settings.importance_weight,
        "fact_importance": args.fact_importance,
        "embedding_model": settings.embedding_spec().model,
        "data": str(args.data),
        "conversations": len(conversations),
        "turns": stored,
        "questions": questions,
        "evidence_malformed": sum(c.malformed_evidence for c in conversations),
        "evidence_dropped": sum(c.dropped_evidence for c in conversations),
        "ingest_turns_per_second": stored / ingest_seconds if ingest_seconds else 0.0,
        "recall_ms_per_question": 1000 * query_seconds / questions if questions else 0.0,
        "overall (1-4)": overall.summary(),
        "all (1-5)": everything.summary(),
        "categories": {f"{c} {CATEGORIES[c]}": by_category[c].summary() for c in sorted(by_category)},
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    recency = (
        f", recency half-life {result['recency_half_life_days']:g} d"
        if result["recency_half_life_days"]
        else ""
    )
    if result.get("importance_weight"):
        recency += (
            f", importance weight {result['importance_weight']:g} "
            f"(facts {result['fact_importance'] if result['fact_importance'] is not None else 0.5:g})"
        )
    table = Table(
        title=f"LoCoMo evidence recall — mode {result['mode']}, facts {result['facts']}, "
        f"{result['embedding_model']}{recency}"
    )
    table.add_column("category")
    table.add_column("n", justify="right")
    for name in [*(f"R@{k}" for k in KS), "hit@5", "hit@10", "MRR"]:
        table.add_column(name, justify="right")
    rows = [("overall (1-4)", result["overall (1-4)"]), ("all (1-5)", result["all (1-5)"])]
    rows += list(result["categories"].items())
    for name, s in rows:
        table.add_row(
            name,
            str(s["questions"]),
            *(f"{s[f'R@{k}']:.1f}" for k in KS),
            f"{s['hit@5']:.1f}",
            f"{s['hit@10']:.1f}",
            f"{s['MRR']:.3f}",
        )
    console = Console()
    console.print(table)
    console.print(
        f"{result['turns']} turns, {result['questions']} questions; evidence ids malformed "
        f"{result['evidence_malformed']} (normalised), dropped {result['evidence_dropped']} (no such turn); "
        f"ingest {result['ingest_turns_per_second']:.0f} turns/s, "
        f"recall {result['recall_ms_per_question']:.1f} ms per question"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="a LoCoMo JSON file")
    parser.add_argument("--mode", choices=["hybrid", "vector", "text"], default="hybrid")
    parser.add_argument(
        "--facts",
        choices=["none", "plain", "linked", "only", "observations"],
        default="none",
        help="LoCoMo's observations beside the turns: not at all, as plain memories, as facts linked to "
        "their turns, as facts (unlinked) without the turns, or learnt from the turns by memagent's "
        "extraction and consolidation with a stand-in model (observations)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--merge-threshold",
        type=float,
        default=0.85,
        help="--facts observations: the cosine similarity at which the stand-in consolidator takes a new "
        "fact for one already held (above 1: never)",
    )
    parser.add_argument(
        "--undated-facts",
        action="store_true",
        help="store observations without the '(<session date>)' prefix (their created_at keeps the date)",
    )
    parser.add_argument(
        "--dump", type=Path, default=None, help="write each question's ranked memories here (JSON lines)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the memories after the run")
    parser.add_argument(
        "--half-life-days", type=float, default=None, help="recency weighting (off by default)"
    )
    parser.add_argument(
        "--fact-importance",
        type=float,
        default=None,
        help="importance of the observations (0-1; default: 0.5, as the turns, which LoCoMo gives none)",
    )
    parser.add_argument(
        "--importance-weight",
        type=float,
        default=None,
        help="MEMAGENT_IMPORTANCE_WEIGHT for the run (0-1; default: the setting, off)",
    )
    args = parser.parse_args()
    if args.half_life_days:
        os.environ["MEMAGENT_RECENCY_HALF_LIFE_DAYS"] = str(args.half_life_days)
    if args.importance_weight is not None:
        os.environ["MEMAGENT_IMPORTANCE_WEIGHT"] = str(args.importance_weight)
    if not args.data.is_file():
        sys.exit(f"error: no such file {args.data}")

    temp_home = None
    if "MEMAGENT_DATABASE_URL" not in os.environ and "MEMAGENT_HOME" not in os.environ:
        temp_home = Path(tempfile.mkdtemp(prefix="memagent-locomo-"))
        os.environ["MEMAGENT_HOME"] = str(temp_home)
    try:
        result = run(args)
    finally:
        if temp_home is not None:
            from memagent.store.embedded import EmbeddedPostgres

            EmbeddedPostgres(temp_home).destroy()
            shutil.rmtree(temp_home, ignore_errors=True)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
