"""LoCoMo's observations learnt through memagent's own learning path (`locomo.py --facts observations`).

A stand-in chat model plays both of learning's parts offline, so what is measured is memagent's pipeline
(memagent.usecases.learning.Learner: the extraction call, each fact embedded, the nearest current facts
found and shown, the decisions applied under the lock, the links) with a real extractor's output:

- extractor: for the exchange it is shown (one dialogue turn), the observations LoCoMo ships whose first
  evidence turn it is (an LLM extracted them from that session);
- consolidator: for each new fact, `noop` onto the most similar fact it was shown when their cosine
  similarity (the embedder's, without the date prefix) is at least the threshold — the same fact said
  again, which then covers both facts' turns — else `add`. A threshold above 1 never merges: every
  observation is its own fact (consolidation off).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

_PREFIX = re.compile(r"^\(.*?\) ")


def _records(messages: Sequence[Any]) -> list[dict[str, Any]]:
    lines = messages[-1].content.splitlines()
    return [json.loads(line) for line in lines[1:-1]]


class ObservationModel:
    """The stand-in extractor and consolidator (a ChatModel: memagent calls complete())."""

    def __init__(self, embedder: Any, threshold: float) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.facts_of_turn: dict[str, list[str]] = {}  # a turn's text -> the facts to extract from it
        self.merged: dict[str, str] = {}  # a fact not stored -> the fact it was merged into
        self.calls = 0

    @property
    def model(self) -> str:
        return f"locomo-observations (merge at {self.threshold:g})"

    def stream(self, messages: Sequence[Any]) -> Iterator[str]:
        raise NotImplementedError("learning asks for whole replies")

    def complete(self, messages: Sequence[Any], *, schema: Any = None) -> Any:
        from memagent.providers.chat import Completion

        self.calls += 1
        records = _records(messages)
        if "extract durable facts" in messages[0].content:
            facts = self.facts_of_turn.get(records[0]["text"], [])
            return Completion(json.dumps({"facts": [{"text": f, "importance": 0.5} for f in facts]}))
        new = [r["text"] for r in records if "new" in r]
        shown = [(int(r["id"]), str(r["text"])) for r in records if "id" in r]
        vectors = np.asarray(self.embedder.embed([_PREFIX.sub("", t) for t in new + [t for _, t in shown]]))
        decisions = []
        for index, text in enumerate(new, start=1):
            similarity = vectors[len(new) :] @ vectors[index - 1] if shown else np.zeros(0)
            best = int(np.argmax(similarity)) if len(similarity) else -1
            if best >= 0 and similarity[best] >= self.threshold:
                self.merged[text] = shown[best][1]
                decisions.append(
                    {
                        "new": index,
                        "action": "noop",
                        "target": shown[best][0],
                        "text": None,
                        "reason": f"cosine {similarity[best]:.3f}",
                    }
                )
            else:
                decisions.append(
                    {"new": index, "action": "add", "target": None, "text": None, "reason": "new"}
                )
        return Completion(json.dumps({"decisions": decisions}))
